"""Training speed on a GPU under JAX (bf16), from shards on disk against the same batches in memory.

    python benchmarks/gpu_jax.py --examples 16384                 # on the GPU machine (JAX, no TensorFlow)
    python benchmarks/gpu_jax.py --examples 64 --steps 3 --archs k2c1   # a quick check on a CPU

Needs only JAX, Keras and what musictag.features.shard_reader reads with (numpy, protobuf, google-crc32c): the GPU
machine within reach has no TensorFlow, so the shards are written here from synthetic log-mel-like
spectrograms of the real shape and dtype (96 x 1366 float16, 50 tags), by `write_synthetic_shards` (the
TFRecord format of musictag.features.shard_writer, framed and checksummed by hand), `--examples` of them in shards of
`--per-shard`.

Per architecture (k2c1, k1c2, k2c2 by default), batch `--batch-size`, `mixed_bfloat16`, XLA-compiled:
  memory  training steps over batches already on the host (the same batches every step)
  disk    training steps fed by musictag.features.shard_reader (shuffled, prefetched) as `train.backend: jax` trains
Prints examples/s for each, the input pipeline's overhead (memory / disk time - 1; goal <= 5%) and the
extrapolated epoch time at MSD size (201,680 training clips; goal <= 60 s, against the dissertation's
727 s for k2c1 on its GPU).
"""
from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

MSD_TRAIN_CLIPS = 201_680
DISSERTATION_K2C1_EPOCH_S = 727


def write_synthetic_shards(out_dir: Path, n_examples: int, per_shard: int, n_tags: int = 50,
                           shape=(96, 1366), seed: int = 0) -> None:
    """A `train` split of TFRecord shards and its index.json, as musictag.features.shard_writer writes them (uncompressed)."""
    import json

    import numpy as np

    from musictag.features.shard_reader import _example_class, _masked_crc

    example_class = _example_class()
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards, n_shards = [], -(-n_examples // per_shard)
    template = rng.uniform(-80, 0, size=shape).astype(np.float16)  # one log-mel, rolled per example: fast
    for k in range(n_shards):
        path = out_dir / f"train-{k:05d}-of-{n_shards:05d}.tfrecord"
        count = min(per_shard, n_examples - k * per_shard)
        with open(path, "wb") as handle:
            for i in range(count):
                example = example_class()
                feature = example.features.feature
                feature["id"].bytes_list.value.append(f"clip{k}-{i}".encode())
                feature["spectrogram"].bytes_list.value.append(np.roll(template, i, axis=1).tobytes())
                feature["target"].bytes_list.value.append((rng.random(n_tags) < 0.1).astype(np.uint8).tobytes())
                data = example.SerializeToString()
                length = struct.pack("<Q", len(data))
                handle.write(length + struct.pack("<I", _masked_crc(length)) + data
                             + struct.pack("<I", _masked_crc(data)))
        shards.append({"file": path.name, "n_examples": count, "bytes": path.stat().st_size})
    index = {"spectrogram_shape": list(shape), "spectrogram_dtype": "float16", "compression": "",
             "tag_names": [f"tag{j}" for j in range(n_tags)], "front_end": {},
             "splits": {"train": {"n_examples": n_examples, "shards": shards}}}
    (out_dir / "index.json").write_text(json.dumps(index))


def time_steps(model, batches, steps: int) -> float:
    """Seconds for `steps` training steps over `batches` (an iterator), after two untimed (compilation)."""
    import jax

    for _ in range(2):
        model.train_on_batch(*next(batches))
    started = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(*next(batches))
    jax.block_until_ready(loss)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="k2c1,k1c2,k2c2")
    parser.add_argument("--examples", type=int, default=16384)
    parser.add_argument("--per-shard", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    parser.add_argument("--shards-dir", default="", help="reuse shards written there before")
    args = parser.parse_args()

    import itertools

    import jax
    import keras

    from musictag.features import shard_reader
    from musictag.model.architectures import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    print(f"JAX {jax.__version__} on {jax.devices()}, Keras {keras.__version__}, batch {args.batch_size}, "
          f"bfloat16, {args.steps} timed steps", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        shards_dir = Path(args.shards_dir or tmp)
        if not (shards_dir / "index.json").exists():
            started = time.perf_counter()
            write_synthetic_shards(shards_dir, args.examples, args.per_shard)
            print(f"wrote {args.examples} examples in {time.perf_counter() - started:.0f} s", flush=True)

        def from_disk():
            for epoch in itertools.count():
                yield from shard_reader.prefetched(shard_reader.epoch_batches(
                    shards_dir, "train", args.batch_size, shuffle=True, shuffle_buffer=1024, seed=epoch,
                    multiple_of=args.batch_size))

        in_memory = list(itertools.islice(from_disk(), 4))
        rows = []
        for arch in args.archs.split(","):
            model = build_model(arch, n_tags=50, n_mels=96, n_frames=1366)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(),
                          jit_compile=True)
            memory_s = time_steps(model, itertools.cycle(in_memory), args.steps)
            disk_s = time_steps(model, from_disk(), args.steps)
            rate_memory, rate_disk = (args.steps * args.batch_size / s for s in (memory_s, disk_s))
            rows.append((arch, rate_memory, rate_disk, disk_s / memory_s - 1, MSD_TRAIN_CLIPS / rate_disk))
            print(f"  {arch}: {rate_memory:.0f} examples/s from memory, {rate_disk:.0f} from disk", flush=True)
    print(f"\n{'model':8s} {'memory ex/s':>12s} {'disk ex/s':>10s} {'overhead':>9s} {'MSD epoch s':>12s} "
          f"{'x 727 s':>8s}")
    for arch, rate_memory, rate_disk, overhead, epoch_s in rows:
        print(f"{arch:8s} {rate_memory:12.0f} {rate_disk:10.0f} {overhead:9.1%} {epoch_s:12.1f} "
              f"{DISSERTATION_K2C1_EPOCH_S / epoch_s:8.1f}")


if __name__ == "__main__":
    main()
