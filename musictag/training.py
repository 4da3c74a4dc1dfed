"""Training a tagger from the TFRecord shards: Adam on binary cross-entropy, as in dissertation 3.4.

One call, `train`, does it all: seeds, distribution strategy, model from the registry, tf.data input,
validation every epoch with macro ROC-AUC and PR-AUC, best and last checkpoints, optional early
stopping, an exact resume after a crash (Keras BackupAndRestore in a directory DVC does not delete),
and per-epoch dvclive logs that `dvc plots show` draws. Beside the weights it saves the model's
config and training log, so a `.keras` file is never separated from how it was made.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from musictag.errors import MusictagError
from musictag.models import MODELS, build_model
from musictag.records import make_dataset, read_index, steps_per_epoch

STRATEGIES = {
    "default": tf.distribute.get_strategy,  # one device: the GPU if there is one, else the CPU
    "mirrored": tf.distribute.MirroredStrategy,  # all GPUs of this machine
    "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,  # several machines, from TF_CONFIG
}
BEST_MODEL, LAST_MODEL, CONFIG, HISTORY = "best.keras", "last.keras", "config.json", "history.csv"


class Throughput(keras.callbacks.Callback):
    """Print examples/s each epoch: Keras' progress bar gives ms/step but not the rate that matters."""

    def __init__(self, batch_size: int, steps: int):
        super().__init__()
        self.examples_per_epoch = batch_size * steps
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed_s = time.perf_counter() - self.started
        print(f"epoch {epoch + 1}: {self.examples_per_epoch / elapsed_s:.1f} examples/s ({elapsed_s:.0f} s)")


def epochs_of_data(shards_dir: Path, batch_size: int, shuffle_buffer: int, seed: int, first_epoch: int,
                   epochs: int) -> tf.data.Dataset:
    """Training batches for epochs first_epoch..epochs-1, epoch e shuffled with seed + e.

    Each epoch's order depends only on the seed and its number, so a run resumed at epoch k sees
    exactly the batches an uninterrupted run would have seen from epoch k on.
    """
    data = None
    for epoch in range(first_epoch, epochs):
        epoch_data = make_dataset(shards_dir, "train", batch_size, shuffle=True, shuffle_buffer=shuffle_buffer,
                                  seed=seed + epoch)
        data = epoch_data if data is None else data.concatenate(epoch_data)
    return data


def resume_epoch(backup_dir: Path, history_csv: Path) -> int:
    """The epoch BackupAndRestore will resume at (0 for a fresh run); the log is cut back to match it.

    Keras records the next epoch in `training_metadata.json` of the backup; a kill between that
    backup and the log's row of the same epoch must leave neither a missing nor a doubled row.
    """
    metadata = backup_dir / "training_metadata.json"
    if not metadata.exists():
        return 0
    epoch = int(json.loads(metadata.read_text())["epoch"])
    if history_csv.exists():
        history = pd.read_csv(history_csv)
        history[history["epoch"] < epoch].to_csv(history_csv, index=False)
    return epoch


def check_params(model: str, epochs, batch_size, learning_rate, strategy: str) -> None:
    """Fail before any work, naming the param."""
    if model not in MODELS:
        raise MusictagError(f"model: unknown architecture '{model}'; known: {', '.join(MODELS)}")
    for name, value in (("train.epochs", epochs), ("train.batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MusictagError(f"{name}: need a positive integer, got {value!r}")
    if not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise MusictagError(f"train.learning_rate: need a positive number, got {learning_rate!r}")
    if strategy not in STRATEGIES:
        raise MusictagError(f"train.strategy: unknown strategy '{strategy}'; known: {', '.join(STRATEGIES)}")


def train(shards_dir: Path, out_dir: Path, backup_dir: Path, live_dir: Path, model: str, hyperparameters: dict,
          epochs: int, batch_size: int, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
          epsilon: float = 1e-8, shuffle_buffer: int = 512, seed: int = 2018, early_stopping_patience: int = 0,
          mixed_precision: bool = False, jit_compile: bool = False, strategy: str = "default") -> dict:
    """Train `model` on the train split, validating each epoch; return a summary for metrics/.

    `out_dir` receives best.keras (highest validation ROC-AUC), last.keras, config.json and
    history.csv. `backup_dir` holds the crash-recovery state until the run completes.
    """
    check_params(model, epochs, batch_size, learning_rate, strategy)
    shards_dir, out_dir, backup_dir, live_dir = map(Path, (shards_dir, out_dir, backup_dir, live_dir))
    index = read_index(shards_dir)
    n_mels, n_frames = index["spectrogram_shape"]
    n_tags = len(index["tag_names"])
    keras.utils.set_random_seed(seed)
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    with STRATEGIES[strategy]().scope():
        network = build_model(model, n_tags=n_tags, n_mels=n_mels, n_frames=n_frames, **hyperparameters)
        network.compile(
            optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon),
            loss=keras.losses.BinaryCrossentropy(),
            metrics=[keras.metrics.AUC(multi_label=True, num_labels=n_tags, name="auc"),
                     keras.metrics.AUC(curve="PR", multi_label=True, num_labels=n_tags, name="pr_auc")],
            jit_compile=jit_compile,
        )
    steps = steps_per_epoch(index, "train", batch_size)
    resuming = backup_dir.exists()
    if not resuming:
        shutil.rmtree(out_dir, ignore_errors=True)
    first_epoch = resume_epoch(backup_dir, out_dir / HISTORY)
    train_data = epochs_of_data(shards_dir, batch_size, shuffle_buffer, seed, first_epoch, epochs)
    valid_data = make_dataset(shards_dir, "valid", batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": model, "hyperparameters": hyperparameters, "n_tags": n_tags, "tag_names": index["tag_names"],
              "input_shape": [n_mels, n_frames, 1], "parameters": network.count_params(),
              "train": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                        "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon, "shuffle_buffer": shuffle_buffer,
                        "seed": seed, "mixed_precision": mixed_precision, "jit_compile": jit_compile,
                        "strategy": strategy}, "front_end": index["front_end"]}
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    print(f"{model}: {network.count_params():,} parameters; {steps} steps of {batch_size} per epoch"
          + (" (resuming from the last finished epoch)" if resuming else ""))

    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(out_dir / HISTORY), append=resuming),
        keras.callbacks.ModelCheckpoint(str(out_dir / BEST_MODEL), monitor="val_auc", mode="max",
                                        save_best_only=True),
        keras.callbacks.ModelCheckpoint(str(out_dir / LAST_MODEL)),
        Throughput(batch_size, steps),
        DVCLiveCallback(live=Live(str(live_dir), resume=resuming, dvcyaml=None, save_dvc_exp=False,
                                  report=None)),
    ]
    if early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                                       patience=early_stopping_patience, restore_best_weights=False))
    network.fit(train_data, epochs=epochs, steps_per_epoch=steps, validation_data=valid_data,
                callbacks=callbacks, verbose=2)
    return summarize_history(out_dir / HISTORY, model, network.count_params())


def summarize_history(history_csv: Path, model: str, parameters: int) -> dict:
    """The run's figures from its whole log, resumed epochs included."""
    history = pd.read_csv(history_csv)
    last = history.iloc[-1]
    return {"model": model, "parameters": parameters, "epochs_run": len(history),
            "best_val_auc": round(float(history["val_auc"].max()), 4),
            "best_epoch": int(history.loc[history["val_auc"].idxmax(), "epoch"]) + 1,
            "last_val_auc": round(float(last["val_auc"]), 4), "last_val_pr_auc": round(float(last["val_pr_auc"]), 4),
            "last_train_loss": round(float(last["loss"]), 4), "last_val_loss": round(float(last["val_loss"]), 4)}
