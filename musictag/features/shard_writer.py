"""Writing the TFRecord shards of the spectrogram store (read by musictag.features.shard_dataset on TensorFlow and
musictag.features.shard_reader elsewhere), and checking them against the store.

Records are read sequentially only, so shuffling happens twice (dissertation 3.1.3): once when
writing, a seeded permutation of each split spread over shards of at most `examples_per_shard`,
so every shard is a random sample of its split; then while reading, the shard order is shuffled
every epoch and examples from several shards are interleaved into a shuffle buffer.

One tf.train.Example per clip, three bytes features:
  id           the clip id, UTF-8
  spectrogram  the log-mel, raw little-endian float16 (or float32), row-major (n_mels, n_frames)
  target       the manifest's 0/1 tag row, one uint8 per tag (n_tags,)
`index.json` beside the shards lists them with their example counts, so training never counts records.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from musictag.datasets.manifest import SPLITS, Manifest
from musictag.errors import MusictagError
from musictag.features.shard_dataset import make_dataset
from musictag.features.shard_reader import INDEX_NAME, read_index, split_entry
from musictag.features.spectrogram_store import SpectrogramStore
from musictag.files import first_line, replace_dir, write_atomic

FLOAT16_SMALLEST_NORMAL = float(np.finfo(np.float16).smallest_normal)  # ~6.1e-5; below it spacing is 2**-24


# --- writing ----------------------------------------------------------------------------------------------


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(id_: str, spectrogram: np.ndarray, target: np.ndarray, dtype: np.dtype) -> bytes:
    """One serialized Example. Targets are uint8 bytes rather than an int64 list: both parse at ~1.8 us per
    example in a batch of 256 (50 tags, 68 bytes either way, as 0/1 varints take a byte each), so the
    tie goes to the same decode_raw path as the spectrogram."""
    with np.errstate(over="ignore"):  # overflow is reported below, naming the clip
        encoded = spectrogram.astype(dtype)
    if np.isinf(encoded).sum() != np.isinf(spectrogram).sum():
        raise MusictagError(f"shards.spectrogram_dtype: clip '{id_}' has values beyond {dtype.name}'s range "
                            f"(|x| > {np.finfo(dtype).max:g}); use float32")
    return tf.train.Example(features=tf.train.Features(feature={
        "id": _bytes_feature(id_.encode()),
        "spectrogram": _bytes_feature(encoded.tobytes()),
        "target": _bytes_feature(target.tobytes()),
    })).SerializeToString(deterministic=True)  # map entries sorted: upb orders them by a per-process hash seed


def _shuffled_split(manifest: Manifest, split: str, store: SpectrogramStore, seed: int) -> tuple[list[str], np.ndarray, int]:
    """(ids, targets (n, n_tags) uint8, n_skipped): the split's clips in the store, in a seeded random order.
    Clips missing from the store were rejected upstream; they are skipped and counted."""
    clips = manifest.split(split)
    present = np.array([id_ in store for id_ in clips.clips["id"]], dtype=bool)
    order = np.random.default_rng(seed).permutation(int(present.sum()))
    ids = clips.clips["id"].to_numpy()[present][order]
    return ids.tolist(), clips.targets[present][order], int((~present).sum())


def _write_split(split, ids, targets, store, out_dir, examples_per_shard, options, dtype, progress) -> list[dict]:
    """Write one split's shards into `out_dir`, each under a temporary name until it is complete.
    Shards are balanced (sizes differ by at most one) so no interleaved reader runs dry early."""
    if not ids:
        return []  # an empty split gets no shard at all, so reading it fails clearly rather than yield nothing
    n_shards = math.ceil(len(ids) / examples_per_shard)
    shards = []
    for k, rows in enumerate(np.array_split(np.arange(len(ids)), n_shards)):
        path = out_dir / f"{split}-{k:05d}-of-{n_shards:05d}.tfrecord"

        def write(tmp: Path, rows=rows) -> None:
            with tf.io.TFRecordWriter(str(tmp), options) as writer:
                for row in rows:
                    writer.write(_example(ids[row], store[ids[row]], targets[row], dtype))
                    progress.update()

        write_atomic(path, write)
        shards.append({"file": path.name, "n_examples": len(rows), "bytes": path.stat().st_size})
    return shards


def write_shards(store_dir, manifest: Manifest, out_dir, examples_per_shard: int, compression: str,
                 spectrogram_dtype: str, seed: int) -> dict:
    """Write train/valid/test TFRecord shards of the store's spectrograms to `out_dir`; return its index.

    Each split is shuffled with `np.random.default_rng(seed)` before sharding, so examples are mixed across
    shards. Everything is written into `out_dir.partial` and moved to `out_dir` only when complete: an
    interruption or a write error (disk full) leaves any previous `out_dir` as it was.
    """
    store = SpectrogramStore(store_dir)
    plans = {split: _shuffled_split(manifest, split, store, seed) for split in SPLITS}
    n_examples = sum(len(ids) for ids, _, _ in plans.values())
    if n_examples == 0:
        raise MusictagError(f"{store.dir}: holds none of the manifest's {len(manifest)} clips")
    out_dir = Path(out_dir)
    partial_dir = out_dir.with_name(out_dir.name + ".partial")
    dtype = np.dtype(spectrogram_dtype).newbyteorder("<")
    options = tf.io.TFRecordOptions(compression_type=compression)
    shutil.rmtree(partial_dir, ignore_errors=True)  # debris of an interrupted run is never reused
    try:
        partial_dir.mkdir(parents=True)
        splits = {}
        with tqdm(total=n_examples, unit="example", desc="shards") as progress:
            for split, (ids, targets, n_skipped) in plans.items():
                shards = _write_split(split, ids, targets, store, partial_dir, examples_per_shard,
                                      options, dtype, progress)
                n_bytes = sum(shard["bytes"] for shard in shards)
                splits[split] = {"n_examples": len(ids), "n_skipped": n_skipped, "bytes": n_bytes,
                                 "bytes_per_example": round(n_bytes / len(ids), 1) if ids else None,
                                 "shards": shards}
        index = {
            "spectrogram_shape": list(store.shape),
            "spectrogram_dtype": spectrogram_dtype,
            "compression": compression,
            "seed": seed,
            "examples_per_shard": examples_per_shard,
            "n_examples": n_examples,
            "n_skipped": sum(split["n_skipped"] for split in splits.values()),
            "tag_names": list(manifest.tag_names),
            "front_end": store.front_end,
            "splits": splits,
        }
        (partial_dir / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n")
        replace_dir(partial_dir, out_dir)
    except (OSError, tf.errors.OpError) as err:
        raise MusictagError(f"{out_dir}: cannot write shards ({first_line(err)}); "
                            "any previous shards there are unchanged") from None
    finally:
        shutil.rmtree(partial_dir, ignore_errors=True)
    return index


def roundtrip_error(store_dir, shards_dir, split: str = "test") -> dict:
    """How far the shards of `split` are from the float32 store: max absolute error, max relative error
    (over values in float16's normal range, |x| >= 6.1e-5; below it max_abs covers the subnormal spacing)
    and whether every value is within float16 precision, i.e. |decoded - x| <= |float16(x) - x|."""
    store = SpectrogramStore(store_dir)
    expected = split_entry(read_index(shards_dir), split, shards_dir)["n_examples"]
    max_abs = max_rel = 0.0
    within = True
    seen: set[str] = set()
    for spectrograms, _, ids in make_dataset(shards_dir, split, 64, with_ids=True).as_numpy_iterator():
        for id_, decoded in zip(ids, spectrograms[..., 0]):
            id_ = id_.decode()
            if id_ in seen or id_ not in store:
                raise MusictagError(f"{shards_dir}: clip '{id_}' is repeated in the shards or missing from {store.dir}")
            seen.add(id_)
            original = store[id_]
            error = np.abs(decoded - original)
            normal = np.abs(original) >= FLOAT16_SMALLEST_NORMAL
            max_abs = max(max_abs, float(error.max()))
            max_rel = max(max_rel, float((error[normal] / np.abs(original[normal])).max(initial=0.0)))
            within &= bool((error <= np.abs(original.astype(np.float16).astype(np.float32) - original)).all())
    if len(seen) != expected:
        raise MusictagError(f"{shards_dir}: split '{split}' holds {len(seen)} examples but its index says {expected}")
    return {"split": split, "n_examples": len(seen), "max_abs_error": max_abs, "max_rel_error": max_rel,
            "within_float16_precision": within}
