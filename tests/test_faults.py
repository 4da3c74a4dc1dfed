"""Faults a real catalogue brings: broken audio through the real pipeline, and bad params."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import FRONT_END, kill_9_when, tree_bytes, write_store
from dvc_repo import DvcRepo
from audio_files import BAD_FILES, write

from musictag.datasets.manifest import Manifest
from musictag.features.extraction import extract
from musictag.features.shard_writer import write_shards
from musictag.features.spectrogram_store import SpectrogramStore
from musictag.params import defaults

# extract's params beside the front end, and write_shards': params.yaml's, in small chunks and shards
SPECTROGRAMS = {key: value for key, value in defaults("spectrograms", chunk_size=2, workers=2).items()
                if key != "front_end"}
SHARDS = defaults("shards", examples_per_shard=4, compression="", seed=3)


@pytest.fixture(scope="module")
def broken_catalogue(tmp_path_factory):
    """A folder catalogue: every kind of broken file test_audio builds, plus three good ones."""
    root = tmp_path_factory.mktemp("catalogue")
    audio_dir = root / "audio"
    expected, rows = {}, []
    for k, case in enumerate(BAD_FILES):
        if any(mark.name == "skipif" and mark.args[0] for mark in case.marks):
            continue
        build, reason = case.values
        folder = audio_dir / f"case{k:02d}"
        folder.mkdir(parents=True)
        path = build(folder)
        expected[f"case{k:02d}"] = reason
        rows.append((f"case{k:02d}", path.relative_to(audio_dir), ["train", "valid", "test"][k % 3]))
    for name, rate, channels in [("hires.wav", 96000, 2), ("mono.flac", 22050, 1), ("song.ogg", 44100, 2)]:
        write(audio_dir / name, 3.0, rate, channels)
        expected[name] = None
        rows.append((name, name, "train"))
    csv_path = root / "tags.csv"
    csv_path.write_text("id,path,tags,split\n" + "".join(f"{i},{p},rock|pop,{s}\n" for i, p, s in rows))
    return audio_dir, csv_path, expected


def test_repro_rejects_every_broken_file_with_its_reason_and_keeps_the_good(tmp_path, broken_catalogue):
    audio_dir, csv_path, expected = broken_catalogue
    assert sum(reason is not None for reason in expected.values()) >= 10
    repo = DvcRepo(tmp_path)
    repo.set_param("data.source", "folder")
    repo.set_param("data.folder.audio_dir", str(audio_dir))
    repo.set_param("data.folder.tags_csv", str(csv_path))
    repo.dvc("repro", "clean")
    rejects = pd.read_csv(repo.path / "metrics" / "rejects.csv")
    assert dict(zip(rejects["id"], rejects["reason"])) == {i: r for i, r in expected.items() if r}
    kept = pd.read_csv(repo.path / "data" / "clean.csv")
    assert sorted(kept["id"]) == sorted(i for i, r in expected.items() if r is None)
    per_reason = pd.read_csv(repo.path / "metrics" / "rejects_per_reason.csv").set_index("reason")
    assert per_reason["all"].to_dict() == {reason: int((rejects["reason"] == reason).sum()) for reason in per_reason.index}
    assert (per_reason[["train", "valid", "test"]].sum(axis=1) == per_reason["all"]).all()


@pytest.mark.parametrize("stage, key, value, named", [
    ("dataset", "data.source", "spotify", "data.source"),
    ("dataset", "data.folder.tags_csv", "/no/such/tags.csv", "/no/such/tags.csv"),
    ("train", "model", "vgg16", "model"),
    ("train", "train.epochs", -3, "train.epochs"),
    ("spectrograms", "spectrograms.executor", "spark", "spectrograms.executor"),
])
def test_bad_params_fail_at_once_with_one_line(tmp_path, stage, key, value, named):
    repo = DvcRepo(tmp_path)
    repo.set_param(key, value)
    if key.startswith("data.folder"):
        repo.set_param("data.source", "folder")
    if stage == "spectrograms":  # it reads the clean manifest first: give it one
        (repo.path / "data").mkdir(exist_ok=True)
        (repo.path / "data" / "clean.csv").write_text("id,audio_path,split,artist,title,tag:x\na,a.wav,train,,,1\n")
    done = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=repo.path, env=repo.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("musictag: error: ") and named in last, done.stderr
    assert "Traceback" not in done.stderr


# the same work, made slow enough per item that the kill lands mid-run
SLOW_EXTRACTION = """
import time
from pathlib import Path
from musictag.audio.decoding import spectrogram_of
from musictag.features import extraction as spectrograms

def slow(path, **front_end):
    time.sleep(0.3)
    return spectrogram_of(path, **front_end)

spectrograms.spectrogram_of = slow
spectrograms.extract({ids!r}, {paths!r}, Path({out!r}), {front_end!r}, **{settings!r})
"""
SLOW_SHARDING = """
import time
from pathlib import Path
from musictag.datasets.manifest import Manifest
from musictag.features import shard_writer as records
from musictag.features.spectrogram_store import SpectrogramStore

read_row = SpectrogramStore.__getitem__
SpectrogramStore.__getitem__ = lambda store, id_: (time.sleep(0.05), read_row(store, id_))[1]
records.write_shards(Path({store!r}), Manifest.read(Path({manifest!r})), Path({out!r}), **{settings!r})
"""


def test_kill_9_mid_extraction_then_rerun_gives_the_uninterrupted_store(tmp_path):
    front_end = {**FRONT_END, "duration_s": 3.0}
    ids = [f"s{i}" for i in range(12)]
    paths = [str(write(tmp_path / f"{id_}.wav", 2.0 + i % 3, 16000)) for i, id_ in enumerate(ids)]
    store, scratch = tmp_path / "store", tmp_path / "store.partial"
    kill_9_when(SLOW_EXTRACTION.format(ids=ids, paths=paths, out=str(store), front_end=front_end,
                                       settings=SPECTROGRAMS),
                lambda: any(scratch.glob("chunk-*.npy")))
    assert not store.exists()  # nothing is published before the whole store is done
    done_before = {path.name for path in scratch.glob("chunk-*.npy")}
    resumed = extract(ids, paths, store, front_end, **SPECTROGRAMS)
    assert resumed["resumed_songs"] == 2 * len(done_before) < len(ids)
    extract(ids, paths, tmp_path / "fresh", front_end, **{**SPECTROGRAMS, "workers": 1})
    assert (store / "index.json").read_bytes() == (tmp_path / "fresh" / "index.json").read_bytes()
    for (id_a, a), (id_b, b) in zip(SpectrogramStore(store).items(), SpectrogramStore(tmp_path / "fresh").items(),
                                    strict=True):
        assert id_a == id_b and np.array_equal(a, b)


def test_kill_9_mid_sharding_keeps_the_previous_shards_and_a_rerun_writes_the_uninterrupted_ones(tmp_path):
    ids = [f"clip{i:02d}" for i in range(40)]
    write_store(tmp_path / "store", ids)
    clips = pd.DataFrame({"id": ids, "audio_path": [f"{i}.flac" for i in ids], "artist": "a", "title": ids,
                          "split": ["train"] * 24 + ["valid"] * 8 + ["test"] * 8})
    manifest = Manifest(clips, ["t0", "t1"], np.random.default_rng(0).random((40, 2)) < 0.5)
    manifest.write(tmp_path / "manifest.csv")
    out, partial = tmp_path / "shards", tmp_path / "shards.partial"
    write_shards(tmp_path / "store", manifest, out, **{**SHARDS, "seed": 1})
    previous = tree_bytes(out)
    kill_9_when(SLOW_SHARDING.format(store=str(tmp_path / "store"), manifest=str(tmp_path / "manifest.csv"),
                                     out=str(out), settings=SHARDS),
                lambda: partial.exists() and any(partial.glob("*.tfrecord")))
    assert tree_bytes(out) == previous  # the killed run touched only its .partial directory
    write_shards(tmp_path / "store", manifest, out, **SHARDS)
    write_shards(tmp_path / "store", manifest, tmp_path / "fresh", **SHARDS)
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh") != previous
    assert not partial.exists()


def test_nothing_a_fork_server_worker_writes_before_its_start_reaches_the_terminal(tmp_path):
    """A fork server's worker writes to the run's stderr until its initializer points it at /dev/null: one still
    starting as a short run ends printed its EOFError traceback after the run's one-line error. The fork
    server starts with stderr on /dev/null, so whatever it and its workers write there is gone; here a
    module it preloads writes to file descriptor 2 as it is imported."""
    (tmp_path / "loud.py").write_text("import os\nos.write(2, b'LOUD PRELOAD\\n')\n")
    script = ("import sys\nfrom musictag.audio.workers import BoundedPool\n"
              "with BoundedPool(2, 30, 512, start_method='forkserver', preload=['loud']) as pool:\n"
              "    print(list(pool.imap(abs, [-1, -2, -3])))\n"
              "sys.stderr.write('parent stderr still works\\n')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(-1, 1), (-2, 2), (-3, 3)]"
    assert done.stderr == "parent stderr still works\n"
