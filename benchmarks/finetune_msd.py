"""Fine-tuning Choi et al.'s MSD CRNN (musictag.pretrained "msd-crnn") on the pipeline's shards, against training
the same architecture from scratch: test macro ROC-AUC and PR-AUC per epoch, mean and 95% Student-t interval
over seeds (musictag.evaluation.intervals).

    python benchmarks/finetune_msd.py frozen --seeds 1 2 3 --epochs 10   # (a) the body frozen, its output cached
    python benchmarks/finetune_msd.py full --seeds 1 --epochs 2          # (b) every layer: MSD start vs scratch
    python benchmarks/finetune_msd.py table                              # the tables of what has run

frozen: the CRNN's convolutional body with the MSD weights runs once per clip of every split (the (15, 128)
sequence its GRUs read), cached in data/finetune/body.npz; then the two GRUs (MSD weights) and a new output
layer for the shards' tags are trained on the cache with the train section's Adam settings and batch size.
full: the pipeline's own training (musictag.model.training.train, model msd-crnn) with train.init msd-crnn
and with no init, one epoch at a time (train continues a finished run when the epoch count rises), the test
split scored after each epoch. The cost is measured and printed before either starts.

Rows go to metrics/finetune/{frozen,full}.csv as each epoch ends, and a rerun skips the (init, seed, epoch)
rows already there, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from musictag.paths import DATA_DIR, METRICS_DIR  # noqa: E402

SHARDS = DATA_DIR / "shards"
WORK_DIR = DATA_DIR / "finetune"
RESULTS_DIR = METRICS_DIR / "finetune"
HEAD_LAYERS = ("gru1", "gru2", "dropout_top", "embedding", "output")  # what frozen trains, after the body


def split_targets(split: str) -> np.ndarray:
    """Targets (n, n_tags) of a shards split, in the order Tagger.predict_shards predicts it."""
    from musictag.features.shard_reader import epoch_batches

    return np.concatenate([target for _, target in epoch_batches(SHARDS, split, 64)])


def scores(targets: np.ndarray, probabilities: np.ndarray) -> dict:
    from musictag.evaluation.scores import tag_metrics

    _, summary = tag_metrics(targets, probabilities)
    return {"test_roc_auc": summary["roc_auc"]["macro"], "test_pr_auc": summary["pr_auc"]["macro"]}


def crnn_for_the_shards(init: str):
    """msd-crnn sized for the shards' tags, from the MSD weights (init "msd-crnn") or Keras' initialisation."""
    from musictag.features.shard_reader import read_index
    from musictag.model.architectures import build_model
    from musictag.model.training import start_from_published

    index = read_index(SHARDS)
    model = build_model("msd-crnn", n_tags=len(index["tag_names"]), n_mels=index["spectrogram_shape"][0],
                        n_frames=index["spectrogram_shape"][1])
    if init:
        start_from_published(model, init, "msd-crnn", index["front_end"])
    return model


def cached_body() -> dict:
    """{split: (sequences (n, 15, 128) float32, targets (n, n_tags))} of the MSD body, computed once."""
    import keras

    from musictag.features.shard_reader import epoch_batches

    cache = WORK_DIR / "body.npz"
    if cache.exists():
        stored = np.load(cache)
        return {split: (stored[f"{split}_x"], stored[f"{split}_y"]) for split in ("train", "valid", "test")}
    model = crnn_for_the_shards("msd-crnn")
    body = keras.Model(model.inputs, model.get_layer("to_sequence").output)
    arrays, started, done = {}, time.perf_counter(), 0
    for split in ("train", "valid", "test"):
        sequences, targets = [], []
        for spectrograms, target in epoch_batches(SHARDS, split, 32):
            sequences.append(np.asarray(body.predict_on_batch(spectrograms)))
            targets.append(target)
            done += len(target)
            print(f"\rbody: {done} clips, {done / (time.perf_counter() - started):.1f} clips/s", end="", flush=True)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = np.concatenate(sequences), np.concatenate(targets)
    print()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache.with_suffix(".tmp.npz"), **arrays)
    os.replace(cache.with_suffix(".tmp.npz"), cache)
    return {split: (arrays[f"{split}_x"], arrays[f"{split}_y"]) for split in ("train", "valid", "test")}


def done_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["init", "seed", "epoch"])


def append_row(path: Path, row: dict) -> None:
    """One result row, added by rewriting the file whole under a temporary name (never half a file)."""
    table = pd.concat([done_rows(path), pd.DataFrame([row])], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path.with_suffix(".tmp"), index=False)
    os.replace(path.with_suffix(".tmp"), path)
    print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def run_frozen(seeds: list[int], epochs: int, train: dict) -> None:
    import keras

    results = RESULTS_DIR / "frozen.csv"
    cache = cached_body()
    x_train, y_train = cache["train"]
    x_test, y_test = cache["test"]
    for seed in seeds:
        if len(done_rows(results).query("seed == @seed")) >= epochs:
            continue
        keras.utils.set_random_seed(seed)
        model = crnn_for_the_shards("msd-crnn")
        sequence = keras.Input(x_train.shape[1:], name="body_output")
        x = sequence
        for name in HEAD_LAYERS:
            x = model.get_layer(name)(x)
        head = keras.Model(sequence, x)
        head.compile(keras.optimizers.Adam(train["learning_rate"], beta_1=train["beta_1"], beta_2=train["beta_2"],
                                           epsilon=train["epsilon"]), keras.losses.BinaryCrossentropy())
        rng = np.random.default_rng(seed)
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            order = rng.permutation(len(x_train))
            head.fit(x_train[order], y_train[order], batch_size=train["batch_size"], epochs=1, shuffle=False, verbose=0)
            probabilities = np.asarray(head.predict(x_test, batch_size=256, verbose=0))
            if len(done_rows(results).query("seed == @seed and epoch == @epoch")) == 0:
                append_row(results, {"init": "msd-crnn (frozen body)", "seed": seed, "epoch": epoch,
                                     **scores(y_test, probabilities), "epoch_time_s": time.perf_counter() - started})


def measured_step_s(train: dict, steps: int = 3) -> float:
    """Seconds per training step of msd-crnn at the train section's batch size, after one warm-up step."""
    import keras

    from musictag.features.shard_reader import epoch_batches

    model = crnn_for_the_shards("")
    model.compile(keras.optimizers.Adam(train["learning_rate"]), keras.losses.BinaryCrossentropy())
    batches = epoch_batches(SHARDS, "train", train["batch_size"])
    spectrograms, targets = next(batches)
    model.train_on_batch(spectrograms, targets)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(spectrograms, targets)
    return (time.perf_counter() - started) / steps


def run_full(seeds: list[int], epochs: int, train: dict) -> None:
    from musictag.features.shard_reader import read_index, steps_per_epoch
    from musictag.inference.tagger import Tagger
    from musictag.model.training import train as train_model

    results = RESULTS_DIR / "full.csv"
    index = read_index(SHARDS)
    step_s = measured_step_s(train)
    per_epoch_s = step_s * steps_per_epoch(index, "train", train["batch_size"])
    runs = [(init, seed) for seed in seeds for init in ("msd-crnn", "")]
    print(f"cost: {per_epoch_s / 60:.1f} min an epoch ({step_s:.2f} s a step of {train['batch_size']}), "
          f"{len(runs)} runs x {epochs} epochs: about {len(runs) * epochs * per_epoch_s / 3600:.1f} h "
          f"(plus validation and test scoring)", flush=True)
    y_test = split_targets("test")
    for init, seed in runs:
        start, name = init or "scratch", f"{init or 'scratch'}-seed{seed}"
        for epoch in range(1, epochs + 1):
            if len(done_rows(results).query("init == @start and seed == @seed and epoch == @epoch")):
                continue
            started = time.perf_counter()
            train_model(SHARDS, WORK_DIR / name / "model", WORK_DIR / "recovery", WORK_DIR / name / "live",
                        model="msd-crnn", hyperparameters={},
                        **{**train, "seed": seed, "epochs": epoch, "init": init, "early_stopping_patience": 0})
            tagger = Tagger(WORK_DIR / name / "model", checkpoint="last.keras")
            probabilities = tagger.predict_shards(SHARDS, splits=("test",)).probabilities
            append_row(results, {"init": start, "seed": seed, "epoch": epoch,
                                 **scores(y_test, probabilities), "epoch_time_s": time.perf_counter() - started})


def table() -> None:
    """Per condition and epoch: runs, then mean [95% interval] of test macro ROC-AUC and PR-AUC."""
    from musictag.evaluation.intervals import confidence_interval

    for path in (RESULTS_DIR / "frozen.csv", RESULTS_DIR / "full.csv"):
        if not path.exists():
            continue
        print(f"\n{path.relative_to(METRICS_DIR.parent)}\n| start | epoch | runs | test macro ROC-AUC | test macro PR-AUC |"
              "\n|---|---|---|---|---|")
        for (init, epoch), rows in done_rows(path).groupby(["init", "epoch"], sort=False):
            cells = []
            for metric in ("test_roc_auc", "test_pr_auc"):
                values = rows[metric].to_numpy()
                if len(values) > 1:
                    mean, half = confidence_interval(values, 0.95)
                    cells.append(f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}]")
                else:
                    cells.append(f"{values[0]:.4f} (one run)")
            print(f"| {init} | {epoch} | {len(rows)} | {cells[0]} | {cells[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["frozen", "full", "table"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if args.what == "table":
        return table()
    from musictag.params import load_params

    train = load_params("train")
    (run_frozen if args.what == "frozen" else run_full)(args.seeds, args.epochs, train)
    table()


if __name__ == "__main__":
    main()
