"""Training speed on this CPU: examples/s per architecture, and what reading the shards costs.

    python benchmarks/train_speed.py speed                       # all architectures, batch 16, before vs after
    python benchmarks/train_speed.py speed --archs k2c2 --steps 5
    python benchmarks/train_speed.py batchnorm                   # batch norm alone: fused op vs matmul sums
    python benchmarks/train_speed.py pipeline --steps 24         # make_dataset epochs vs the same batches in RAM

`speed` times steady-state training steps (forward + backward + Adam, the train function `fit` runs; one
warm-up step first) for each architecture under each TensorFlow configuration:
  before  TensorFlow's own defaults (oneDNN off on a CPU without AVX-512) and plain keras Conv2D gradients
  after   TF_ENABLE_ONEDNN_OPTS=1 and the models accelerated as training does (matmul kernel gradients, see
          musictag.model.acceleration; batch norm's sums as matmuls, see onednn.batch_norm)
  after-bf16   `after` under Keras' mixed_bfloat16 policy (bfloat16 compute, float32 weights): a CPU with
          AVX512_BF16 or AMX runs its matmuls in half precision; the printed loss shows what it does to training
  after-keras-bn, after-fused-bn   `after` with Keras' own BatchNormalization, or with TensorFlow's fused
          one (oneDNN's FusedBatchNormV3, as a GPU run takes cuDNN's): `--configs after-keras-bn,after-fused-bn,after`
Each configuration lives in its own worker process (the oneDNN switch is read when TensorFlow is imported),
and the workers take turns, one step at a time, so a shared, noisy machine slows them alike; figures are
medians over the rounds, ratios are medians of the per-round ratios.

`batchnorm` times one training-mode batch norm alone, forward and backward, at the sizes of k2c2's and k1c2's
layers and at nearby channel counts that are multiples of 8: TensorFlow's fused op (oneDNN's) against
musictag.model.onednn's matmul sums, which training takes on a CPU where the channels are not a multiple of 8.

`pipeline` trains k2c1 (or --arch) for a few short epochs reading the train shards through
musictag.features.shard_dataset.make_dataset(shuffle=True, repeat=True) as training does, and for the same number of
epochs and steps from the same batches already in RAM; the first epoch of each fit (tracing, shuffle
buffer fill) is left out. Goal: shards/RAM epoch time <= 1.05.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARDS = ROOT / "data" / "shards"
ARCHS = ["k2c1", "k1c2", "k2c2", "crnn", "short_resnet"]
# name -> worker settings; onednn None sets TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own default on AVX2)
CONFIGS = {
    "before": {"framework": "tf", "onednn": None, "conv": "plain"},
    "after": {"framework": "tf", "onednn": "1", "conv": "musictag"},
    "after-keras-bn": {"framework": "tf", "onednn": "1", "conv": "musictag", "bn": "plain"},
    "after-fused-bn": {"framework": "tf", "onednn": "1", "conv": "musictag", "bn": "fused"},
    "onednn-plain-conv": {"framework": "tf", "onednn": "1", "conv": "plain"},
    "default-musictag-conv": {"framework": "tf", "onednn": None, "conv": "musictag"},
    "after-inter-op-1": {"framework": "tf", "onednn": "1", "conv": "musictag", "inter_op": 1},
    "after-xla": {"framework": "tf", "onednn": "1", "conv": "musictag", "jit": True},
    "after-bf16": {"framework": "tf", "onednn": "1", "conv": "musictag", "policy": "mixed_bfloat16"},
    "before-xla": {"framework": "tf", "onednn": None, "conv": "plain", "jit": True},
    "torch": {"framework": "torch"},
    "torch-channels-last": {"framework": "torch", "channels_last": True},  # PyTorch's faster CPU layout
}
TF_CONFIGS = [name for name, spec in CONFIGS.items() if spec["framework"] == "tf"]


def add_step_options(parser: argparse.ArgumentParser, steps: int) -> None:
    """The options of every interleaved-steps benchmark (this one's `speed` and torch_k2c2.py)."""
    parser.add_argument("--steps", type=int, default=steps, help="timed steps (rounds) per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--inter-op", type=int, default=0, help="tf inter-op threads, 0 = TF's default")


def worker_spec(config: str, arch: str, batch_path: str, args: argparse.Namespace) -> dict:
    """What a worker process needs: the configuration's settings, the architecture, the batch, the options."""
    return {**CONFIGS[config], "arch": arch, "batch": batch_path, "warmup": args.warmup,
            **({"inter_op": args.inter_op} if args.inter_op else {})}


# --- the batch every worker trains on --------------------------------------------------------------------


def save_batch(path: Path, batch_size: int, n_tags: int | None = None) -> tuple[str, int]:
    """The first train batch of the real shards (float32), or a synthetic log-mel-like one if there are none."""
    import numpy as np

    if (SHARDS / "index.json").exists():
        from musictag.features.shard_dataset import make_dataset

        x, y = next(make_dataset(SHARDS, "train", batch_size).as_numpy_iterator())
        source = f"first train batch of {SHARDS.relative_to(ROOT)}"
    else:
        rng = np.random.default_rng(0)
        x = rng.normal(-20.0, 15.0, (batch_size, 96, 1366, 1)).astype(np.float32)
        y = (rng.random((batch_size, n_tags or 50)) < 0.1).astype(np.float32)
        source = "synthetic (no data/shards)"
    np.savez(path, x=x, y=y)
    return source, int(y.shape[1])


# --- worker processes --------------------------------------------------------------------------------------


class Worker:
    """One configuration in its own process, stepping on command: 'step' -> 'STEP seconds loss'."""

    def __init__(self, name: str, spec: dict, script: Path, log_dir: Path):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        # explicit, as importing musictag would otherwise switch oneDNN on; "0" is TF's default on AVX2
        env["TF_ENABLE_ONEDNN_OPTS"] = spec.get("onednn") or "0"
        self.name, self.log = name, log_dir / f"{name}.log"
        self.process = subprocess.Popen([sys.executable, str(script), "--worker", json.dumps(spec)], env=env,
                                        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log.open("w"), text=True)

    def _reply(self, prefix: str) -> str:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} died; see its log:\n" + self.log.read_text()[-3000:])
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def ready(self) -> dict:
        return json.loads(self._reply("READY "))

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def step(self) -> tuple[float, float]:
        self.send("step")
        seconds, loss = self._reply("STEP ").split()
        return float(seconds), float(loss)

    def lines_until_end(self, command: str) -> list[str]:
        self.send(command)
        lines = []
        while (line := self._reply("OUT ")) != "END":
            lines.append(line)
        return lines

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()


def tf_worker(spec: dict) -> None:
    """Build and compile spec['arch'] as musictag.model.training does (without the AUC metrics, which torch lacks
    and which cost ~nothing), warm up, then serve steps on the saved batch."""
    import keras
    import numpy as np
    import tensorflow as tf

    from musictag.model import acceleration, onednn
    from musictag.model.architectures import build_model

    if spec.get("inter_op"):
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter_op"])
    if spec.get("intra_op"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra_op"])
    if spec["conv"] == "plain":  # the convolutions as keras computes them, TF's own Conv2DBackpropFilter
        acceleration.convolution = lambda layer, plain_op, inputs, kernel: plain_op(inputs, kernel)
    if spec.get("bn") == "plain":  # Keras' own BatchNormalization in training, not musictag.model.onednn.batch_norm
        acceleration.normalization = lambda layer, plain_call, inputs, **options: plain_call(inputs, **options)
    if spec.get("bn") == "fused":  # TensorFlow's FusedBatchNormV3 (oneDNN's), as a GPU run takes cuDNN's
        onednn.normalize_by_matmul = onednn.normalize_fused
    batch = np.load(spec["batch"])
    x, y = batch["x"], batch["y"]
    keras.mixed_precision.set_global_policy(spec.get("policy", "float32"))
    keras.utils.set_random_seed(2018)
    model = acceleration.accelerate(build_model(spec["arch"], n_tags=y.shape[1], n_mels=x.shape[1],
                                                n_frames=x.shape[2]))
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  loss=keras.losses.BinaryCrossentropy(), jit_compile=bool(spec.get("jit")))
    for _ in range(spec.get("warmup", 1)):
        model.train_on_batch(x, y)
    try:
        from tensorflow.python.util import _pywrap_util_port  # private, only to report the switch's state

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    print("READY " + json.dumps({"tf": tf.__version__, "keras": keras.__version__, "onednn": onednn,
                                 "trainable_params": sum(int(w.numpy().size) for w in model.trainable_weights),
                                 "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                                 "intra_op": tf.config.threading.get_intra_op_parallelism_threads()}), flush=True)
    for command in sys.stdin:
        command = command.strip()
        if command == "step":
            started = time.perf_counter()
            loss = float(model.train_on_batch(x, y))
            print(f"STEP {time.perf_counter() - started:.4f} {loss:.6f}", flush=True)
        elif command == "profile":
            for line in profile_tf_step(model, x, y):
                print("OUT " + line, flush=True)
            print("OUT END", flush=True)
        elif command == "quit":
            return


def profile_tf_step(model, x, y, top: int = 15) -> list[str]:
    """One step under tf.profiler: op time summed per layer (forward / backward) and the costliest ops.
    Op times overlap when ops run concurrently, so they can add up to more than the step's wall time."""
    import collections
    import re

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        model.train_on_batch(x, y)
        wall_s = time.perf_counter() - started
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    by_layer, by_op = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads; one event per op run
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "scope/op_name:OpType"
                if ":" not in name or "::" in name:  # ExecutorState::Process etc. enclose the ops
                    continue
                seconds = event.duration_ps / 1e12
                layer = re.search(r"(?:^|/)((?:unit|block)\d+_[a-z]+\d?|input_norm|dense\w*|output|gru\d)", name)
                where = layer.group(1) if layer else "optimizer/other"
                backward = "gradient_tape" in name or "_grad/" in name  # _grad/: acceleration's own gradient
                by_layer[("backward " if backward else "forward  ") + where] += seconds
                by_op[name] += seconds
    lines = [f"one step: {wall_s:.2f} s wall, {sum(by_op.values()):.2f} s summed op time"]
    lines += [f"{seconds:7.3f} s  {key}" for key, seconds in sorted(by_layer.items()) if seconds >= 0.005]
    lines.append(f"costliest {top} ops:")
    lines += [f"{seconds:7.3f} s  {name}" for name, seconds in by_op.most_common(top)]
    return lines


# --- speed per architecture --------------------------------------------------------------------------------


def interleaved(workers: list[Worker], rounds: int, batch_size: int, label: str) -> dict[str, list[float]]:
    """Step each worker once per round, rotating who goes first; print every round."""
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        cells = []
        for worker in order:
            seconds, loss = worker.step()
            times[worker.name].append(seconds)
            cells.append(f"{worker.name} {seconds:6.2f} s (loss {loss:.4f})")
        print(f"  {label} round {r + 1}: " + "; ".join(cells), flush=True)
    return times


def sequential(specs: dict[str, dict], script: Path, log_dir: Path, steps: int, label: str) -> dict[str, list[float]]:
    """One worker at a time (for models whose workers would not fit in memory side by side)."""
    times = {}
    for name, spec in specs.items():
        worker = Worker(name, spec, script, log_dir)
        try:
            info = worker.ready()
            times[name] = [worker.step()[0] for _ in range(steps)]
        finally:
            worker.close()
        print(f"  {label} {name} (oneDNN {info['onednn']}), alone: step s {[round(t, 2) for t in times[name]]}",
              flush=True)
    return times


def summarize(times: dict[str, list[float]], batch_size: int, reference: str) -> dict[str, tuple[float, float]]:
    """name -> (median examples/s, median per-round speed ratio to `reference`)."""
    out = {}
    for name, seconds in times.items():
        ratios = [ref / own for own, ref in zip(seconds, times[reference])]
        out[name] = (batch_size / statistics.median(seconds), statistics.median(ratios))
    return out


def run_speed(args) -> None:
    configs = args.configs.split(",")
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        source, n_tags = save_batch(Path(tmp) / "batch.npz", args.batch_size)
        print(f"batch {args.batch_size} of (96, 1366, 1), {n_tags} tags: {source}; {os.cpu_count()} cores; "
              f"{args.steps} timed steps per configuration after {args.warmup} warm-up step(s)")
        table = []
        for arch in args.archs.split(","):
            specs = {c: worker_spec(c, arch, f"{tmp}/batch.npz", args) for c in configs}
            if args.sequential:
                table.append((arch, summarize(sequential(specs, script, Path(tmp), args.steps, arch),
                                              args.batch_size, configs[0])))
                continue
            workers = [Worker(c, spec, script, Path(tmp)) for c, spec in specs.items()]
            try:
                infos = {w.name: w.ready() for w in workers}
                print(f"{arch}: " + "; ".join(f"{n}: oneDNN {i['onednn']}, threads inter {i['inter_op']} "
                                              f"intra {i['intra_op']}" for n, i in infos.items()), flush=True)
                if args.profile:
                    for worker in workers:
                        print(f"--- {arch}, {worker.name}:\n" + "\n".join(worker.lines_until_end("profile")))
                    continue
                summary = summarize(interleaved(workers, args.steps, args.batch_size, arch), args.batch_size,
                                    configs[0])
            finally:
                for worker in workers:
                    worker.close()
            table.append((arch, summary))
            print(f"{arch}: " + "; ".join(f"{n} {eps:.2f} examples/s" + (f" ({ratio:.2f}x {configs[0]})"
                                                                            if n != configs[0] else "")
                                          for n, (eps, ratio) in summary.items()), flush=True)
    if args.profile:
        return
    print(f"\ntraining examples/s at batch {args.batch_size} (median of {args.steps} interleaved steps):")
    print(f"{'arch':14s}" + "".join(f"{c:>22s}" for c in configs))
    for arch, summary in table:
        print(f"{arch:14s}" + "".join(f"{summary[c][0]:14.2f}" + (f" ({summary[c][1]:4.2f}x)" if c != configs[0]
                                                                   else " " * 8) for c in configs))


# --- batch norm alone -------------------------------------------------------------------------------------

# (height, width, channels) of batch-normalised outputs: k2c2's unit1 and unit2, k1c2's unit1 and unit3, and
# nearby channel counts that are multiples of 8
BATCH_NORM_SHAPES = [(96, 1366, 67), (96, 1366, 64), (96, 1366, 72), (48, 341, 135), (48, 341, 136),
                     (96, 1366, 47), (96, 1366, 48), (96, 68, 95), (96, 68, 96)]


def run_batch_norm(args) -> None:
    """Seconds per forward + backward of one training-mode batch norm over a batch of each shape, TensorFlow's
    fused op (oneDNN's) against musictag.model.onednn.normalize_by_matmul, alternately, medians of --rounds."""
    from musictag.model.onednn import switch_on_onednn

    switch_on_onednn()
    import tensorflow as tf

    from musictag.model import onednn as tf_speed

    print(f"batch norm forward + backward at batch {args.batch_size}, seconds (median of {args.rounds} rounds):")
    print(f"{'shape (h, w, channels)':>24s} {'MB':>6s} {'fused op':>9s} {'matmul sums':>12s} {'ratio':>6s}")
    for shape in BATCH_NORM_SHAPES:
        x = tf.random.stateless_normal((args.batch_size, *shape), seed=(0, 1))
        upstream = tf.random.stateless_normal(x.shape, seed=(0, 2))
        gamma, beta = tf.ones(shape[-1]), tf.zeros(shape[-1])

        def step(normalize):
            @tf.function
            def forward_backward():
                with tf.GradientTape() as tape:
                    tape.watch([x, gamma, beta])
                    y, _, _ = normalize(x, gamma, beta, 1e-3)
                return tape.gradient(y, [x, gamma, beta], output_gradients=upstream)
            return forward_backward

        steps = {"fused": step(tf_speed.normalize_fused), "matmul": step(tf_speed.normalize_by_matmul)}
        times = {name: [] for name in steps}
        for name, function in steps.items():
            function()[0].numpy()  # trace, warm up
        for _ in range(args.rounds):
            for name, function in steps.items():
                started = time.perf_counter()
                function()[0].numpy()
                times[name].append(time.perf_counter() - started)
        fused, matmul = (statistics.median(times[name]) for name in steps)
        megabytes = x.shape.num_elements() * x.dtype.size / 1e6
        print(f"{str(shape):>24s} {megabytes:6.0f} {fused:9.3f} {matmul:12.3f} {fused / matmul:6.2f}", flush=True)


# --- input pipeline overhead -------------------------------------------------------------------------------


def run_pipeline(args) -> None:
    """k2c1 epochs of --steps batches: from make_dataset over the shards vs from the same batches in RAM."""
    from musictag.model.engines import select_backend

    select_backend("tensorflow")  # first: it switches oneDNN on, as the train stage does
    import keras
    import numpy as np
    import tensorflow as tf

    from musictag.features.shard_dataset import make_dataset
    from musictag.features.shard_reader import read_index
    from musictag.model.acceleration import accelerate
    from musictag.model.architectures import build_model

    index = read_index(SHARDS)
    n_mels, n_frames = index["spectrogram_shape"]
    n_tags = len(index["tag_names"])
    shards = make_dataset(SHARDS, "train", args.batch_size, shuffle=True, shuffle_buffer=512, seed=2018,
                          repeat=True)
    cached = list(shards.take(args.steps).as_numpy_iterator())  # the batches an epoch of the shards yields
    in_ram = tf.data.Dataset.from_tensor_slices((np.stack([x for x, _ in cached]),
                                                 np.stack([y for _, y in cached]))).repeat()
    print(f"{args.arch}, batch {args.batch_size}, epochs of {args.steps} steps: make_dataset(shuffle=True, "
          f"repeat=True) over {len(index['splits']['train']['shards'])} train shards "
          f"({index['spectrogram_dtype']}, compression '{index['compression']}') vs the same "
          f"{args.steps} batches in RAM ({sum(x.nbytes for x, _ in cached) / 2**20:.0f} MiB)", flush=True)
    keras.utils.set_random_seed(2018)
    model = accelerate(build_model(args.arch, n_tags=n_tags, n_mels=n_mels, n_frames=n_frames))
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.AUC(multi_label=True, num_labels=n_tags, name="auc")])

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    def epochs(dataset) -> list[float]:
        timer = EpochTimes()
        timer.seconds = []
        model.fit(dataset, epochs=args.epochs + 1, steps_per_epoch=args.steps, callbacks=[timer], verbose=0)
        return timer.seconds[1:]  # epoch 1 traces the step and fills the shuffle buffer

    epochs(in_ram)  # compile the train function once
    batches = iter(shards.skip(args.steps))  # past the shuffle buffer's first fill
    next(batches)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    pipeline_cpu_s, pipeline_wall_s = ((time.process_time() - cpu_started) / args.steps,
                                       (time.perf_counter() - wall_started) / args.steps)
    ratios, ram_all, shard_all = [], [], []
    for r in range(args.rounds):  # alternate which goes first, so a load change mid-round hits both alike
        if r % 2:
            shard, ram = epochs(shards), epochs(in_ram)
        else:
            ram, shard = epochs(in_ram), epochs(shards)
        ram_all += ram
        shard_all += shard
        ratios.append(statistics.median(shard) / statistics.median(ram))
        print(f"  round {r + 1}: epoch s in RAM {[round(s, 2) for s in ram]}, from shards "
              f"{[round(s, 2) for s in shard]}, ratio {ratios[-1]:.3f}", flush=True)
    ram_s, shard_s = statistics.median(ram_all), statistics.median(shard_all)
    print(f"epoch of {args.steps} steps: {ram_s:.2f} s in RAM ({args.steps * args.batch_size / ram_s:.1f} examples/s), "
          f"{shard_s:.2f} s from the shards ({args.steps * args.batch_size / shard_s:.1f} examples/s)")
    print(f"input pipeline overhead: shards/RAM epoch time = {statistics.median(ratios):.3f} "
          f"(median of {args.rounds} rounds; goal <= 1.05)")
    step_s = ram_s / args.steps
    print(f"the input pipeline alone: {pipeline_cpu_s * 1000:.1f} ms CPU ({pipeline_wall_s * 1000:.1f} ms wall) per batch, "
          f"{pipeline_cpu_s / step_s:.1%} of a {step_s * 1000:.0f} ms training step: were all of it taken from "
          f"training, epoch time x{1 + pipeline_cpu_s / step_s:.3f} (a bound the noisy ratio above scatters around)")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return tf_worker(json.loads(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    speed = sub.add_parser("speed", help="examples/s per architecture")
    speed.add_argument("--archs", default=",".join(ARCHS))
    speed.add_argument("--configs", default="before,after", help=f"first is the reference; from {TF_CONFIGS}")
    add_step_options(speed, steps=3)
    speed.add_argument("--profile", action="store_true", help="print one profiled step per configuration instead")
    speed.add_argument("--sequential", action="store_true",
                       help="run the configurations one after the other, not side by side (short_resnet at batch "
                            "16 peaks at ~12 GB with TF's defaults, over 15 GB with oneDNN)")
    batch_norm = sub.add_parser("batchnorm", help="batch norm alone: TF's fused op vs onednn's matmul sums")
    batch_norm.add_argument("--rounds", type=int, default=5)
    batch_norm.add_argument("--batch-size", type=int, default=16)
    pipeline = sub.add_parser("pipeline", help="make_dataset vs in-RAM epoch time")
    pipeline.add_argument("--arch", default="k2c1")
    pipeline.add_argument("--steps", type=int, default=24, help="steps per epoch")
    pipeline.add_argument("--epochs", type=int, default=2, help="timed epochs per fit (after one untimed)")
    pipeline.add_argument("--rounds", type=int, default=3)
    pipeline.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.what == "speed":
        if not set(args.configs.split(",")) <= set(TF_CONFIGS):
            parser.error(f"speed runs TensorFlow configurations, from {TF_CONFIGS}; PyTorch (k2c2): "
                         "benchmarks/torch_k2c2.py")
        run_speed(args)
    elif args.what == "batchnorm":
        run_batch_norm(args)
    else:
        run_pipeline(args)


if __name__ == "__main__":
    main()
