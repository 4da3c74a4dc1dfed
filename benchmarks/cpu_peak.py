"""CPU training against this machine's float32 matrix-multiply peak: how close each architecture gets.

    python benchmarks/cpu_peak.py                        # k2c1, k1c2, k2c2 at batch 16
    python benchmarks/cpu_peak.py --archs k2c2 --steps 5

Prints, per architecture: training examples/s (this project's TensorFlow configuration, as training runs
it), FLOP per training example counted from the layer shapes, and the fraction of the measured SGEMM
peak that makes (examples/s x FLOP / peak). With PyTorch installed (`pip install -r
requirements-bench.txt`), k2c2 also runs as the same network in PyTorch (channels_last; torch_k2c2.py) in
the same rounds, for the TensorFlow / PyTorch ratio. Goal (issue 13): k1c2 and k2c2 at half the peak or more.

FLOP per training example: every convolution and dense layer costs 2 x multiply-adds forward and twice
that backward (the input gradient and the kernel gradient), but the first layer, whose input needs no
gradient; the GRUs of crnn likewise per step (input and recurrent matmuls of three gates). Batch
normalisation, activations and pooling are left out of the FLOPs: few operations a value, but each a pass
over the convolutions' outputs in memory. So the table also prints the machine's memory bandwidth
(numpy, an add over 256 MB on every core) and, per architecture, how many passes over all its convolution outputs a
step's time per example would move at that bandwidth ("passes"), and how many the half-peak goal leaves
("budget"). Convolution, batch norm, ELU and pooling as separate kernels pass over a unit's output about
20 times forward and backward (batch norm 3 + 5, ELU 2 + 3, pooling 1 + 2, the bias and the two
gradients' matmuls 3, the convolution's write 1): a step whose passes come near that is bound by memory,
not by matmul speed. Even at the full peak the convolutions take half the budget, so a budget below about
twice that (~40 passes) cannot be met without fusing those kernels.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_k2c2  # noqa: E402  (its workers run either framework)
import train_speed  # noqa: E402  (the interleaved worker processes, one per configuration)


def sgemm_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """numpy's float32 matmul of two n x n matrices (its BLAS, every core): the best of `repeats`, GFLOP/s."""
    import numpy as np

    a, b = (np.random.default_rng(seed).random((n, n), dtype=np.float32) for seed in (0, 1))
    a @ b  # warm-up: threads, pages
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes read and written per second by numpy's a + 1 into an existing array of `megabytes`, split across
    every core (TensorFlow's elementwise kernels run on all its intra-op threads; numpy lets go of the GIL in
    the add): the best of `repeats`, GB/s. One core alone reads about half of it on this kind of machine."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(megabytes * 2**20 // 4, np.float32)
    out = np.empty_like(a)
    cores = os.cpu_count() or 1
    parts = list(zip(np.array_split(a, cores), np.array_split(out, cores)))  # (input, output) slices, one a core
    with ThreadPoolExecutor(len(parts)) as threads:
        def add_one() -> None:
            list(threads.map(lambda pair: np.add(pair[0], 1.0, out=pair[1]), parts))

        add_one()  # warm-up: pages, threads
        best = min(_timed(add_one) for _ in range(repeats))
    return 2 * a.nbytes / best / 1e9


def convolution_output_bytes(model) -> int:
    """float32 bytes of every convolution's output of one example of `model`: what batch norm, ELU and pooling
    pass over, forward and backward."""
    import keras
    import numpy as np

    return sum(4 * int(np.prod(layer.output.shape[1:])) for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D))


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def training_flops_per_example(model) -> float:
    """Multiply-add FLOPs of one training example of `model`, from its layers' shapes (see the docstring)."""
    import keras

    total, first = 0.0, True
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, height, width, out_channels = layer.output.shape
            forward = 2 * height * width * out_channels * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            forward = 2 * layer.input.shape[-1] * layer.units
        elif isinstance(layer, keras.layers.GRU):
            steps, features = layer.input.shape[1], layer.input.shape[-1]
            forward = 2 * steps * 3 * (features + layer.units) * layer.units
        else:
            continue
        total += forward * (2 if first else 3)
        first = False
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="k2c1,k1c2,k2c2")
    train_speed.add_step_options(parser, steps=6)
    args = parser.parse_args()
    archs = args.archs.split(",")

    from musictag.model.architectures import build_model

    peak = sgemm_peak_gflops()
    print(f"numpy SGEMM peak (n = 2048, best of 10): {peak:.1f} GFLOP/s", flush=True)
    bandwidth = memory_bandwidth_gbs()
    print(f"memory bandwidth (numpy a + 1 over 256 MB on every core, best of 5): {bandwidth:.1f} GB/s", flush=True)
    try:
        import torch  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
        print("(PyTorch not installed: TensorFlow only; pip install -r requirements-bench.txt for the comparison)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        batch_path = str(Path(tmp) / "batch.npz")
        source, _ = train_speed.save_batch(Path(batch_path), args.batch_size)
        print(f"batch: {source}")
        script = Path(torch_k2c2.__file__)
        for arch in archs:
            configs = ["after", "torch-channels-last"] if with_torch and arch == "k2c2" else ["after"]
            workers = [train_speed.Worker(config, train_speed.worker_spec(config, arch, batch_path, args), script,
                                          Path(tmp)) for config in configs]
            try:
                for worker in workers:
                    worker.ready()
                times = train_speed.interleaved(workers, args.steps, args.batch_size, arch)
            finally:
                for worker in workers:
                    worker.close()
            rates = {config: args.batch_size / statistics.median(times[config]) for config in configs}
            model = build_model(arch, n_tags=50, n_mels=96, n_frames=1366)  # for its layers' shapes
            flops = training_flops_per_example(model)
            rows.append((arch, rates, flops, convolution_output_bytes(model)))
            print(f"  {arch}: {rates['after']:.2f} examples/s, {flops / 1e9:.2f} GFLOP/example, "
                  f"{rates['after'] * flops / 1e9 / peak:.0%} of peak", flush=True)

    print(f"\nbatch {args.batch_size}, medians of {args.steps} interleaved steps; peak {peak:.0f} GFLOP/s")
    print(f"{'model':8s} {'examples/s':>10s} {'GFLOP/ex':>9s} {'GFLOP/s':>8s} {'of peak':>8s} "
          f"{'half-peak ex/s':>14s} {'conv MB/ex':>10s} {'passes':>6s} {'budget':>6s}"
          + (f" {'PyTorch ex/s':>12s} {'TF/PyTorch':>10s}" if with_torch else ""))
    for arch, rates, flops, conv_bytes in rows:
        achieved = rates["after"] * flops / 1e9
        half_peak_rate = peak / 2 / (flops / 1e9)
        passes, budget = (bandwidth * 1e9 / rate / conv_bytes for rate in (rates["after"], half_peak_rate))
        line = (f"{arch:8s} {rates['after']:10.2f} {flops / 1e9:9.2f} {achieved:8.1f} {achieved / peak:8.0%} "
                f"{half_peak_rate:14.2f} {conv_bytes / 1e6:10.1f} {passes:6.1f} {budget:6.1f}")
        if "torch-channels-last" in rates:
            torch_rate = rates["torch-channels-last"]
            line += f" {torch_rate:12.2f} {rates['after'] / torch_rate:10.2f}"
        print(line)


if __name__ == "__main__":
    main()
