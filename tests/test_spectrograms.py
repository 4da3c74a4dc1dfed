"""Catalogue-wide log-mel extraction: few large files, resumable, identical on processes and Dask."""
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import FRONT_END as PARAMS_FRONT_END

from musictag.audio.decoding import spectrogram_of
from musictag.errors import MusictagError
from musictag.features import extraction as spectrograms
from musictag.features.extraction import _chunk_name, extract
from musictag.features.spectrogram_store import SpectrogramStore
from musictag.params import defaults

FRONT_END = {**PARAMS_FRONT_END, "duration_s": 3.0}
# extract's params beside the front end: params.yaml's, in chunks of two songs on two local workers
SPECTROGRAMS = {key: value for key, value in defaults("spectrograms", chunk_size=2, workers=2).items()
                if key != "front_end"}


@pytest.fixture
def songs(tmp_path):
    """Five short real-valued songs (tones plus noise) at 16 kHz, of different lengths."""
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([4.0, 2.0, 5.0, 3.5, 6.0]):
        t = np.arange(int(seconds * 16000)) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (220 * (i + 1)) * t) + 0.05 * rng.standard_normal(len(t))
        path = tmp_path / f"song{i}.wav"
        soundfile.write(path, audio.astype(np.float32), 16000)
        paths.append(str(path))
    return [f"s{i}" for i in range(len(paths))], paths


def test_store_holds_each_song_in_few_files(tmp_path, songs):
    ids, paths = songs
    summary = extract(ids, paths, tmp_path / "store", FRONT_END, **SPECTROGRAMS)
    store = SpectrogramStore(tmp_path / "store")
    assert summary["chunks"] == len(store.chunks) == 3
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == sorted([name for name, _ in store.chunks] +
                                                                           ["index.json"])
    stored = dict(store.items())
    assert list(stored) == ids
    for song_id, path in zip(ids, paths):
        assert stored[song_id].shape == (96, 141)
        np.testing.assert_array_equal(stored[song_id], spectrogram_of(path, **FRONT_END))
    assert not (tmp_path / "store.partial").exists()


def test_chunks_are_the_files_np_save_writes(tmp_path, songs):
    ids, paths = songs
    extract(ids, paths, tmp_path / "store", FRONT_END, **SPECTROGRAMS)
    for name, chunk_ids in SpectrogramStore(tmp_path / "store").chunks:
        expected = io.BytesIO()
        np.save(expected, np.stack([spectrogram_of(paths[ids.index(i)], **FRONT_END) for i in chunk_ids]))
        assert (tmp_path / "store" / name).read_bytes() == expected.getvalue()


def test_rerun_after_interruption_keeps_finished_chunks(tmp_path, songs, capsys, monkeypatch):
    ids, paths = songs

    def interrupted_at_song_3(path, **front_end):  # in the forked workers too
        if path == paths[3]:
            raise KeyboardInterrupt
        return spectrogram_of(path, **front_end)

    monkeypatch.setattr(spectrograms, "spectrogram_of", interrupted_at_song_3)
    with pytest.raises(BaseException):  # chunk 1 fails, as if the run were killed there
        extract(ids, paths, tmp_path / "store", FRONT_END, **SPECTROGRAMS)
    monkeypatch.undo()
    scratch = tmp_path / "store.partial"
    finished = sorted(scratch.glob("chunk-*.npy"))
    assert len(finished) == 1 and not list(scratch.glob("*.tmp"))
    first_mtime = finished[0].stat().st_mtime_ns
    assert not (tmp_path / "store").exists()  # nothing half-done is published

    capsys.readouterr()
    summary = extract(ids, paths, tmp_path / "store", FRONT_END, **SPECTROGRAMS)
    assert summary["resumed_songs"] == 2
    assert "resuming: 1 of 3 chunks" in capsys.readouterr().out
    kept = tmp_path / "store" / finished[0].name
    assert kept.stat().st_mtime_ns == first_mtime  # not recomputed
    fresh = extract(ids, paths, tmp_path / "fresh", FRONT_END, **{**SPECTROGRAMS, "workers": 1})
    assert fresh["resumed_songs"] == 0
    for (a_id, a), (b_id, b) in zip(SpectrogramStore(tmp_path / "store").items(),
                                       SpectrogramStore(tmp_path / "fresh").items()):
        assert a_id == b_id
        np.testing.assert_array_equal(a, b)


def test_changed_params_do_not_reuse_scratch_work(tmp_path, songs):
    ids, paths = songs
    (tmp_path / "store.partial").mkdir()
    extract(ids, paths, tmp_path / "store", FRONT_END, **{**SPECTROGRAMS, "workers": 1})
    other = extract(ids, paths, tmp_path / "store", {**FRONT_END, "n_mels": 64}, **{**SPECTROGRAMS, "workers": 1})
    assert other["resumed_songs"] == 0
    assert next(SpectrogramStore(tmp_path / "store").items())[1].shape == (64, 141)


def test_dask_cluster_gives_byte_identical_store(tmp_path, songs):
    distributed = pytest.importorskip("distributed")
    ids, paths = songs
    extract(ids, paths, tmp_path / "local", FRONT_END, **SPECTROGRAMS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        extract(ids, paths, tmp_path / "dask", FRONT_END,
                **{**SPECTROGRAMS, "executor": "dask", "scheduler_address": cluster.scheduler_address})
    local_files = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert local_files == sorted(p.name for p in (tmp_path / "dask").iterdir())
    for name in local_files:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


def test_an_unreachable_scheduler_names_the_param(tmp_path, songs):
    """The schema checks the values (tests/test_params.py); whether the scheduler answers shows only at run time."""
    pytest.importorskip("distributed")
    ids, paths = songs
    with pytest.raises(MusictagError, match="spectrograms.scheduler_address: cannot reach tcp://127.0.0.1:1"):
        extract(ids, paths, tmp_path / "s", FRONT_END,
                **{**SPECTROGRAMS, "executor": "dask", "scheduler_address": "tcp://127.0.0.1:1"})


def test_the_store_does_not_depend_on_where_the_audio_lies(tmp_path, songs):
    """The manifest's relative paths taken from two clones' roots give the same files, byte for byte, hence
    the same DVC hash on every machine."""
    ids, paths = songs
    relative = [f"audio/{Path(path).name}" for path in paths]
    for clone in ("a", "b"):
        (tmp_path / clone / "audio").mkdir(parents=True)
        for path in paths:
            shutil.copy(path, tmp_path / clone / "audio")
        extract(ids, relative, tmp_path / clone / "store", FRONT_END, **{**SPECTROGRAMS, "workers": 1},
                audio_root=tmp_path / clone)
    names = sorted(p.name for p in (tmp_path / "a" / "store").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b" / "store").iterdir())
    assert all((tmp_path / "a" / "store" / n).read_bytes() == (tmp_path / "b" / "store" / n).read_bytes() for n in names)
    assert _chunk_name(0, ids, relative, FRONT_END) != _chunk_name(0, ids, [f"/x/{p}" for p in relative], FRONT_END)


def test_a_song_that_fails_is_listed_and_the_rest_are_stored(tmp_path, songs, monkeypatch):
    ids, paths = songs
    paths = list(paths)
    (tmp_path / "cut.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")  # clean would reject it
    paths[1] = str(tmp_path / "cut.wav")

    def hangs_on_song_3(path, **front_end):
        if path == paths[3]:
            time.sleep(60)
        return spectrogram_of(path, **front_end)

    monkeypatch.setattr(spectrograms, "spectrogram_of", hangs_on_song_3)
    started = time.monotonic()
    summary = extract(ids, paths, tmp_path / "store", FRONT_END, **{**SPECTROGRAMS, "timeout_s": 2})
    assert time.monotonic() - started < 30
    store = SpectrogramStore(tmp_path / "store")
    assert summary["failed"] == 2
    assert [(f["id"], f["reason"]) for f in store.failed] == [("s1", "undecodable"), ("s3", "timeout")]
    assert [ids for _, ids in store.chunks] == [["s0", None], ["s2", None], ["s4"]]
    assert [song_id for song_id, _ in store.items()] == ["s0", "s2", "s4"]
