"""k2c2 training throughput: Keras on TensorFlow against the same network written in PyTorch.

    pip install -r requirements-bench.txt                  # torch==2.13.0 (CPU), for this benchmark only
    python benchmarks/torch_k2c2.py --steps 5              # before, after, torch (NCHW, channels_last), interleaved
    python benchmarks/torch_k2c2.py --configs before,torch,onednn-plain-conv,after
    python benchmarks/torch_k2c2.py --profile before       # per-layer forward/backward op time of one TF step

Both sides train k2c2 at batch 16 on the same batch (the first of data/shards' train split, float32):
forward, binary cross-entropy on sigmoid outputs, backward, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8).
The PyTorch model is musictag.model.architectures.build_k2c2 layer for layer: BatchNorm over the 96 mel bands, five
3x3 'same' convolutions (67, 135, 135, 203, 271 maps) each with BatchNorm (eps 1e-3, momentum 0.99 in
Keras' sense), ELU and max-pooling (2,4) (2,4) (2,4) (3,5) (4,4), then a 271 -> n_tags sigmoid layer;
same parameter count. Each configuration (see train_speed.CONFIGS) runs in its own process, they take turns
one step at a time, and the figures are medians; the ratio is median(torch step s / TF step s) per round.
Goal: TF/PyTorch >= 1.0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import CONFIGS, Worker, add_step_options, interleaved, save_batch, tf_worker, worker_spec  # noqa: E402


def torch_k2c2(n_tags: int, n_mels: int = 96, widths=(67, 135, 135, 203, 271),
               pools=((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))):
    """build_k2c2 in PyTorch; takes the Keras layout (batch, n_mels, n_frames, 1)."""
    import torch
    from torch import nn

    class K2C2(nn.Module):
        def __init__(self):
            super().__init__()
            # Keras BatchNormalization: epsilon 1e-3, moving = 0.99 * moving + 0.01 * batch
            self.input_norm = nn.BatchNorm1d(n_mels, eps=1e-3, momentum=0.01)
            units, in_ch = [], 1
            for width, pool in zip(widths, pools):
                units += [nn.Conv2d(in_ch, width, 3, padding=1), nn.BatchNorm2d(width, eps=1e-3, momentum=0.01),
                          nn.ELU(), nn.MaxPool2d(pool)]
                in_ch = width
            self.units = nn.Sequential(*units)
            self.output = nn.Linear(in_ch, n_tags)
            for module in self.modules():  # Keras' initializers: Glorot uniform kernels, zero biases
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

        def forward(self, x):
            x = self.input_norm(x[..., 0])  # (b, n_mels, n_frames): statistics per mel band, as axis=1 in Keras
            x = self.units(x.unsqueeze(1))  # (b, 1, n_mels, n_frames) -> (b, 271, 1, 1)
            return torch.sigmoid(self.output(torch.flatten(x, 1)))

    return K2C2()


def torch_worker(spec: dict) -> None:
    import numpy as np
    import torch

    torch.manual_seed(2018)
    batch = np.load(spec["batch"])
    x, y = torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])
    model = torch_k2c2(n_tags=y.shape[1], n_mels=x.shape[1])
    if spec.get("channels_last"):  # NHWC activations: oneDNN's fast path, 1.5-2x faster here than NCHW
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.BCELoss()

    def step() -> float:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(spec.get("warmup", 1)):
        step()
    print("READY " + json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                 "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                 "trainable_params": sum(p.numel() for p in model.parameters())}), flush=True)
    for command in sys.stdin:
        command = command.strip()
        if command == "step":
            started = time.perf_counter()
            loss = step()
            print(f"STEP {time.perf_counter() - started:.4f} {loss:.6f}", flush=True)
        elif command == "profile":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                started = time.perf_counter()
                step()
            print(f"OUT one step: {time.perf_counter() - started:.2f} s wall", flush=True)
            for line in prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15).splitlines():
                print("OUT " + line, flush=True)
            print("OUT END", flush=True)
        elif command == "quit":
            return


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        spec = json.loads(sys.argv[2])
        return torch_worker(spec) if spec["framework"] == "torch" else tf_worker(spec)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="before,after,torch,torch-channels-last", help=f"from {list(CONFIGS)}")
    add_step_options(parser, steps=5)
    parser.add_argument("--profile", metavar="CONFIG", help="profile one step of this configuration instead")
    args = parser.parse_args()
    configs = [args.profile] if args.profile else args.configs.split(",")
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        source, n_tags = save_batch(Path(tmp) / "batch.npz", args.batch_size)
        print(f"k2c2, batch {args.batch_size} of (96, 1366, 1), {n_tags} tags: {source}; {os.cpu_count()} cores",
              flush=True)
        workers = [Worker(c, worker_spec(c, "k2c2", f"{tmp}/batch.npz", args), script, Path(tmp)) for c in configs]
        try:
            for worker in workers:
                print(f"  {worker.name}: {worker.ready()}", flush=True)
            if args.profile:
                print("\n".join(workers[0].lines_until_end("profile")))
                return
            times = interleaved(workers, args.steps, args.batch_size, "k2c2")
        finally:
            for worker in workers:
                worker.close()
    eps = {name: args.batch_size / statistics.median(seconds) for name, seconds in times.items()}
    print(f"\nk2c2 training examples/s at batch {args.batch_size}, median of {args.steps} interleaved steps:")
    for name in configs:
        print(f"  {name:22s} {eps[name]:6.2f} examples/s  ({statistics.median(times[name]):.2f} s/step)")
    torch_configs = [name for name in configs if CONFIGS[name]["framework"] == "torch"]
    if torch_configs:  # against PyTorch's best configuration, round by round
        fastest = [min(times[name][r] for name in torch_configs) for r in range(args.steps)]
        for name in configs:
            if name not in torch_configs:
                ratio = statistics.median(t / s for s, t in zip(times[name], fastest))
                print(f"  TF/PyTorch ratio, {name}: {ratio:.2f} against the faster of {', '.join(torch_configs)}"
                      f" (goal >= 1.0)")


if __name__ == "__main__":
    main()
