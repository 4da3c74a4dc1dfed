"""TFRecord shards: real shards written to tmp_path from a small spectrogram store, read back with tf.data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import tree_bytes, write_store

from musictag.datasets.manifest import BASE_COLUMNS, SPLITS, Manifest
from musictag.errors import MusictagError
from musictag.features.shard_dataset import make_dataset
from musictag.features.shard_reader import read_index, steps_per_epoch
from musictag.features.shard_writer import roundtrip_error, write_shards
from musictag.params import defaults

SHAPE = (16, 64)  # (n_mels, n_frames): small, yet large enough that float16 halves an example
N_TAGS = 5
SPLIT_SIZES = {"train": 40, "valid": 10, "test": 10}
MISSING = ["gone-1", "gone-2", "gone-3"]  # in the manifest (train) but not in the store
SHARDS = defaults("shards")  # params.yaml's examples_per_shard, compression, spectrogram_dtype, seed


def make_manifest(ids_per_split: dict[str, list[str]], seed: int = 0) -> Manifest:
    ids = [id_ for split in SPLITS for id_ in ids_per_split[split]]
    clips = pd.DataFrame({"id": ids, "audio_path": [f"{id_}.mp3" for id_ in ids],
                          "split": [split for split in SPLITS for _ in ids_per_split[split]],
                          "artist": "", "title": ids})[BASE_COLUMNS]
    targets = (np.random.default_rng(seed).random((len(ids), N_TAGS)) < 0.4).astype(np.uint8)
    return Manifest(clips, [f"tag{i}" for i in range(N_TAGS)], targets)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(store_dir, manifest, spectrogram of each id): log-mel-like dB values that float16 cannot hold exactly."""
    ids_per_split = {split: [f"{split}-{i:03d}" for i in range(n)] for split, n in SPLIT_SIZES.items()}
    ids = [id_ for split in SPLITS for id_ in ids_per_split[split]]
    spectrograms = np.random.default_rng(1).uniform(-100, 40, (len(ids),) + SHAPE).astype(np.float32)
    store_dir = write_store(tmp_path_factory.mktemp("store") / "spectrograms", ids, spectrograms, chunk_size=7,
                            front_end={"n_mels": 16})
    ids_per_split["train"] = ids_per_split["train"] + MISSING
    return store_dir, make_manifest(ids_per_split), dict(zip(ids, spectrograms))


def shards(store_dir, manifest: Manifest, out_dir: Path, **options) -> dict:
    """write_shards with params.yaml's shards section, `options` overriding it."""
    return write_shards(store_dir, manifest, out_dir, **{**SHARDS, **options})


def read_all(shards_dir: Path, split: str, **options) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, spectrograms (n, n_mels, n_frames, 1), targets (n, n_tags)) of one pass over `split`."""
    batches = list(make_dataset(shards_dir, split, batch_size=8, with_ids=True, **options).as_numpy_iterator())
    spectrograms, targets, ids = (np.concatenate(parts) for parts in zip(*batches))
    return [id_.decode() for id_ in ids], spectrograms, targets


def records_in(path: Path, compression: str) -> list[bytes]:
    return list(tf.data.TFRecordDataset(str(path), compression_type=compression).as_numpy_iterator())


def shard_ids(path: Path, compression: str) -> list[str]:
    return [tf.train.Example.FromString(record).features.feature["id"].bytes_list.value[0].decode()
            for record in records_in(path, compression)]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_every_clip_comes_back_once_with_its_values_and_targets(corpus, tmp_path, dtype):
    store_dir, manifest, spectrogram_of = corpus
    index = shards(store_dir, manifest, tmp_path / "shards", examples_per_shard=16, spectrogram_dtype=dtype)
    assert index["n_skipped"] == len(MISSING) and index["splits"]["train"]["n_skipped"] == len(MISSING)
    target_of = dict(zip(manifest.clips["id"], manifest.targets))
    for split in SPLITS:
        ids, spectrograms, targets = read_all(tmp_path / "shards", split)
        assert sorted(ids) == sorted(set(manifest.split(split).clips["id"]) - set(MISSING))
        assert spectrograms.shape == (len(ids),) + SHAPE + (1,) and spectrograms.dtype == np.float32
        expected = np.stack([spectrogram_of[id_] for id_ in ids]).astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(spectrograms[..., 0], expected)
        np.testing.assert_array_equal(targets, np.stack([target_of[id_] for id_ in ids]).astype(np.float32))


def test_shards_hold_what_the_index_says_shuffled_across_shards(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    index = shards(store_dir, manifest, tmp_path / "shards", examples_per_shard=16, compression="")
    assert read_index(tmp_path / "shards") == index
    assert index["tag_names"] == manifest.tag_names and index["spectrogram_shape"] == list(SHAPE)
    for split, n_clips in SPLIT_SIZES.items():
        entry = index["splits"][split]
        counts = [len(records_in(tmp_path / "shards" / shard["file"], "")) for shard in entry["shards"]]
        assert counts == [shard["n_examples"] for shard in entry["shards"]]
        assert sum(counts) == entry["n_examples"] == n_clips and max(counts) <= 16
    assert {p.name for p in (tmp_path / "shards").iterdir()} == {
        "index.json", "valid-00000-of-00001.tfrecord", "test-00000-of-00001.tfrecord",
        *(f"train-{k:05d}-of-00003.tfrecord" for k in range(3))}
    first_shard = shard_ids(tmp_path / "shards" / "train-00000-of-00003.tfrecord", "")
    positions = sorted(list(manifest.clips["id"]).index(id_) for id_ in first_shard)
    assert positions[-1] - positions[0] > len(positions)  # drawn from the whole split, not one run of it
    assert [id_ for id_ in first_shard] != sorted(first_shard)
    assert steps_per_epoch(index, "train", 16) == 3 and steps_per_epoch(index, "test", 16) == 1


def test_shuffling_is_deterministic_for_a_seed_and_differs_for_another(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        shards(store_dir, manifest, tmp_path / name, examples_per_shard=16, compression="GZIP", seed=seed)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")  # byte for byte, GZIP included
    train_shard = "train-00000-of-00003.tfrecord"
    assert shard_ids(tmp_path / "a" / train_shard, "GZIP") != shard_ids(tmp_path / "c" / train_shard, "GZIP")

    def epochs(seed, n_epochs=2) -> list[list[str]]:
        dataset = make_dataset(tmp_path / "a", "train", batch_size=8, shuffle=True, shuffle_buffer=8, seed=seed,
                               repeat=True, with_ids=True, num_parallel_reads=2)
        ids = [id_.decode() for _, _, batch in dataset.take(5 * n_epochs).as_numpy_iterator() for id_ in batch]
        return [ids[e * 40:(e + 1) * 40] for e in range(n_epochs)]

    first, second = epochs(seed=3)
    assert sorted(first) == sorted(second) == sorted(set(manifest.split("train").clips["id"]) - set(MISSING))
    assert first != second  # reshuffled each epoch
    assert epochs(seed=3) == [first, second]
    assert epochs(seed=4)[0] != first


def test_gzip_and_plain_both_read_back_and_float16_halves_an_example(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    sizes = {}
    for compression in ("", "GZIP", "ZLIB"):
        for dtype in ("float16", "float32"):
            out_dir = tmp_path / f"{compression or 'plain'}-{dtype}"
            index = shards(store_dir, manifest, out_dir, compression=compression, spectrogram_dtype=dtype)
            assert index["compression"] == compression
            sizes[compression, dtype] = index["splits"]["train"]["bytes_per_example"]
    assert read_all(tmp_path / "plain-float16", "valid")[:1] == read_all(tmp_path / "GZIP-float16", "valid")[:1]
    float16_bytes = SHAPE[0] * SHAPE[1] * 2
    assert float16_bytes < sizes["", "float16"] < float16_bytes + 128  # id, target, protobuf and record framing
    assert 0.45 < sizes["", "float16"] / sizes["", "float32"] < 0.55


def test_roundtrip_is_within_float16_precision(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    shards(store_dir, manifest, tmp_path / "shards")
    report = roundtrip_error(store_dir, tmp_path / "shards", "test")
    assert report["within_float16_precision"] and report["n_examples"] == SPLIT_SIZES["test"]
    assert 0 < report["max_abs_error"] <= 2 ** -11 * 128  # half a float16 ulp at |x| < 128
    assert 0 < report["max_rel_error"] <= 2 ** -11


def test_values_beyond_float16_range_are_refused_and_an_empty_split_gets_no_shard(tmp_path):
    ids = ["a", "b"]
    store_dir = write_store(tmp_path / "store", ids, np.full((2,) + SHAPE, 1e5, dtype=np.float32))
    manifest = make_manifest({"train": ids, "valid": [], "test": []})
    with pytest.raises(MusictagError, match=r"shards\.spectrogram_dtype: clip '[ab]' has values beyond float16"):
        shards(store_dir, manifest, tmp_path / "shards")
    assert not (tmp_path / "shards").exists() and not (tmp_path / "shards.partial").exists()
    index = shards(store_dir, manifest, tmp_path / "shards", spectrogram_dtype="float32")
    assert index["splits"]["valid"] == {"n_examples": 0, "n_skipped": 0, "bytes": 0, "bytes_per_example": None,
                                        "shards": []}
    with pytest.raises(MusictagError, match="split 'valid' has no examples"):
        make_dataset(tmp_path / "shards", "valid", batch_size=4)
    assert read_all(tmp_path / "shards", "train")[1].max() == 1e5


def failing_writer(after: int, error: Exception):
    """A TFRecordWriter that fails like a full disk once `after` records are written, in any shard."""
    written = []

    class FailingWriter(tf.io.TFRecordWriter):
        def write(self, record):
            if len(written) == after:
                raise error
            written.append(record)
            super().write(record)

    return FailingWriter


@pytest.mark.parametrize("error, raised", [
    (OSError(28, "No space left on device"), MusictagError),
    (tf.errors.ResourceExhaustedError(None, None, "disk full\nmore detail"), MusictagError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
def test_a_failed_write_leaves_the_previous_shards_untouched(corpus, tmp_path, monkeypatch, error, raised):
    store_dir, manifest, _ = corpus
    out_dir = tmp_path / "shards"
    shards(store_dir, manifest, out_dir, examples_per_shard=16)
    before = tree_bytes(out_dir)
    monkeypatch.setattr(tf.io, "TFRecordWriter", failing_writer(after=20, error=error))  # in the 2nd shard
    with pytest.raises(raised) as caught:
        shards(store_dir, manifest, out_dir, examples_per_shard=16, seed=99)
    if raised is MusictagError:
        assert str(out_dir) in str(caught.value) and "\n" not in str(caught.value)
    assert tree_bytes(out_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # no .partial or .previous left


def test_debris_of_an_interrupted_run_is_not_reused(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    partial_dir = tmp_path / "shards.partial"
    partial_dir.mkdir()
    (partial_dir / "train-00000-of-00001.tfrecord").write_bytes(b"half a shard")
    shards(store_dir, manifest, tmp_path / "shards", compression="")
    assert "train-00000-of-00001.tfrecord" in {p.name for p in (tmp_path / "shards").iterdir()}
    assert len(read_all(tmp_path / "shards", "train")[0]) == SPLIT_SIZES["train"]
    assert not partial_dir.exists()


def test_missing_inputs_are_one_line_errors(corpus, tmp_path):
    store_dir, manifest, _ = corpus
    with pytest.raises(MusictagError, match="shard index not found"):
        read_index(tmp_path / "nowhere")
    with pytest.raises(MusictagError, match="spectrogram index not found"):
        shards(tmp_path / "nowhere", manifest, tmp_path / "shards")
    bad_store = write_store(tmp_path / "bad-store", ["train-000"], np.zeros((1, 3, 3), np.float32))
    (bad_store / "index.json").write_text((bad_store / "index.json").read_text().replace("[3, 3]", "[16, 64]"))
    with pytest.raises(MusictagError, match=r"chunk-00000\.npy: expected float32 of shape \(1, 16, 64\)"):
        shards(bad_store, manifest, tmp_path / "shards")
    shards(store_dir, manifest, tmp_path / "shards")
    with pytest.raises(MusictagError, match="no split 'dev'"):
        make_dataset(tmp_path / "shards", "dev", batch_size=4)
    with pytest.raises(MusictagError, match="^batch_size: "):
        make_dataset(tmp_path / "shards", "train", batch_size=0)


def test_shards_are_the_same_bytes_from_any_process(corpus, tmp_path):
    """DVC hashes the shards: a rerun in a new process must write the same bytes, or `dvc repro` retrains.
    (upb orders an Example's feature map by a per-process hash seed unless serialised deterministically.)"""
    store_dir, manifest, _ = corpus
    manifest.write(tmp_path / "manifest.csv")
    shards(store_dir, manifest, tmp_path / "here", examples_per_shard=16)
    script = ("import sys; from pathlib import Path; from musictag.datasets.manifest import Manifest; "
              "from musictag.params import defaults; from musictag.features.shard_writer import write_shards; "
              "write_shards(Path(sys.argv[1]), Manifest.read(Path(sys.argv[2])), Path(sys.argv[3]), "
              "**defaults('shards', examples_per_shard=16))")
    for name in ("process1", "process2"):
        subprocess.run([sys.executable, "-c", script, str(store_dir), str(tmp_path / "manifest.csv"),
                        str(tmp_path / name)], check=True, capture_output=True)
        assert tree_bytes(tmp_path / name) == tree_bytes(tmp_path / "here")
