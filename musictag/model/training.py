"""Training a tagger from the TFRecord shards: Adam on binary cross-entropy, as in dissertation 3.4.

One call, `train`, does it all: seeds, distribution strategy, model from the registry, tf.data input,
validation every epoch with macro ROC-AUC and PR-AUC, best and last checkpoints, optional early
stopping, an exact resume after a crash, and per-epoch dvclive logs that `dvc plots show` draws.
Beside the weights it saves the model's config and training log, so a `.keras` file is never
separated from how it was made.

A run works inside its configuration's crash-recovery folder (musictag.model.recovery, outside DVC's
outputs): Keras BackupAndRestore state, the model files and the dvclive logs all grow there, and move
to the outputs only when the run completes. So a killed run leaves the previous outputs as they
were, and its rerun resumes only if nothing its result depends on changed.

Importing this module imports Keras: an entry point calls musictag.model.engines.select_backend first.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from musictag.errors import MusictagError
from musictag.features.shard_reader import read_index
from musictag.files import replace_dir, write_atomic
from musictag.model.acceleration import accelerate
from musictag.model.architectures import build_model
from musictag.model.engines import ENGINES, require_backend
from musictag.model.recovery import RecoveryState, digest_file, digest_tree

MIXED_PRECISION = {False: None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}  # train.mixed_precision
BEST_MODEL, LAST_MODEL, CONFIG, HISTORY = "best.keras", "last.keras", "config.json", "history.csv"
CODE_MODULES = ("musictag.model.architectures", "musictag.model.acceleration", "musictag.model.onednn",
                "musictag.features.shard_dataset", "musictag.features.shard_reader", "musictag.model.engines",
                "musictag.model.training", "musictag.pretrained")
"""The modules a run's weights depend on, hashed by file (not imported: the tf.data reader loads TensorFlow)."""
TIMING = "timing.csv"  # in the run folder while training; at `train`'s `timing_csv` once done


class Throughput(keras.callbacks.Callback):
    """Time each epoch into its own log, `timing_csv`: `train_time_s` (the training steps), `epoch_time_s`
    (with validation) and `examples_per_s` (training), so epoch time gets its interval over runs like any
    score (dissertation fig. 4.3). Not in history.csv or dvclive's logs: those are outputs, and a retrain
    that reproduces the weights must reproduce them byte for byte, which no wall-clock time does."""

    def __init__(self, batch_size: int, steps: int, timing_csv: Path):
        super().__init__()
        self.examples_per_epoch = batch_size * steps
        self.timing_csv = timing_csv
        self.started = self.validating = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.validating = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self.validating = self.validating or time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        ended = time.perf_counter()
        train_time_s = (self.validating or ended) - self.started
        timing = {"epoch": epoch, "train_time_s": train_time_s, "epoch_time_s": ended - self.started,
                  "examples_per_s": self.examples_per_epoch / train_time_s}
        pd.DataFrame([timing]).to_csv(self.timing_csv, mode="a", index=False, header=not self.timing_csv.exists())
        print(f"epoch {epoch + 1}: {timing['examples_per_s']:.1f} examples/s ({train_time_s:.0f} s training, "
              f"{timing['epoch_time_s']:.0f} s with validation)")


class Checkpoints(keras.callbacks.Callback):
    """After every epoch last.keras, and best.keras when the validation ROC-AUC beats `best_val_auc` (the best
    so far; None: the first epoch is). Each file is written whole or not at all (a kill mid-save leaves the
    one before: Keras' ModelCheckpoint writes in place), and without what changes from one save to the next."""

    def __init__(self, run_dir: Path, best_val_auc: float | None):
        super().__init__()
        self.run_dir, self.best_val_auc = run_dir, best_val_auc

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.run_dir / LAST_MODEL)
        val_auc = float((logs or {})["val_auc"])
        if self.best_val_auc is None or val_auc > self.best_val_auc:
            self.best_val_auc = val_auc
            save_model(self.model, self.run_dir / BEST_MODEL)


def stalled(val_auc, patience: int) -> bool:
    """True when a log's best validation ROC-AUC (its first epoch at that value) is `patience` (>= 1) or more
    epochs before its last epoch: the run has stopped improving."""
    values = np.asarray(val_auc, dtype=np.float64)
    return patience > 0 and len(values) > 0 and len(values) - 1 - int(values.argmax()) >= patience


class StopWhenStalled(keras.callbacks.Callback):
    """Early stopping decided from the whole log (history.csv, after CSVLogger wrote this epoch's row), not from
    a counter in memory as Keras' EarlyStopping keeps: a run killed and resumed, or continued with more epochs,
    stops at the epoch an uninterrupted run would."""

    def __init__(self, history_csv: Path, patience: int):
        super().__init__()
        self.history_csv, self.patience = history_csv, patience

    def on_epoch_end(self, epoch, logs=None):
        if stalled(pd.read_csv(self.history_csv)["val_auc"], self.patience):
            print(f"early stop after epoch {epoch + 1}: no better validation ROC-AUC in {self.patience} epochs")
            self.model.stop_training = True


def _renumber_shared_objects(config, numbers: dict):
    """`config` with every "shared_object_id" replaced by its order of first appearance (1, 2, ...)."""
    if isinstance(config, dict):
        return {key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
                else _renumber_shared_objects(value, numbers) for key, value in config.items()}
    if isinstance(config, list):
        return [_renumber_shared_objects(value, numbers) for value in config]
    return config


def save_model(network: keras.Model, path: Path) -> None:
    """`network` as a `.keras` file at `path`, atomically, the same bytes whenever the weights are the same."""
    def write(tmp: Path) -> None:
        network.save(tmp)
        without_save_date(tmp)

    write_atomic(path, write)


class LiveLogs(keras.callbacks.Callback):
    """Each epoch's logs to dvclive, named as dvclive's own Keras callback names them (train/auc, eval/auc),
    which `dvc plots` draws; that callback imports TensorFlow, which the other backends must not."""

    def __init__(self, live_dir: Path, resume: bool):
        super().__init__()
        from dvclive import Live

        self.live = Live(str(live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)

    def on_epoch_end(self, epoch, logs=None):
        from dvclive.utils import standardize_metric_name

        for metric, value in (logs or {}).items():
            self.live.log_metric(standardize_metric_name(metric, "dvclive.keras"), value)
        self.live.next_step()

    def on_train_end(self, logs=None):
        self.live.end()


def hardware(engine) -> dict:
    """What the run trained on, for reports: platform, cores, accelerators, library versions."""
    import platform

    return {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "gpus": engine.gpus(),
            "keras": keras.__version__, "backend": keras.backend.backend(), **engine.versions()}


def configuration_record(shards_dir: Path, model: str, hyperparameters: dict, shaping: dict, engine) -> dict:
    """What a run's weights depend on, epoch by epoch: the shards' bytes, the architecture and its options,
    the params in `shaping` (all of `train` but the epoch count and the early-stopping patience, which
    only decide where a run stops, so raising `train.epochs` continues a run), the code of the model,
    input and training modules, and the Keras backend with its version."""
    code = {name: digest_file(Path(importlib.util.find_spec(name).origin)) for name in CODE_MODULES}
    return {"shards": digest_tree(shards_dir), "model": model, "hyperparameters": hyperparameters,
            "train": shaping, "code": code,
            "backend": {"name": keras.backend.backend(), "keras": keras.__version__, **engine.versions()}}


def resume_epoch(backup_dir: Path, *logs: Path) -> int:
    """The epoch BackupAndRestore will resume at (0 for a fresh run); the per-epoch `logs` are cut back to it.

    Keras records the next epoch in `training_metadata.json` of the backup; a kill between that
    backup and a log's row of the same epoch must leave neither a missing nor a doubled row.
    """
    metadata = backup_dir / "training_metadata.json"
    if not metadata.exists():
        return 0
    epoch = int(json.loads(metadata.read_text())["epoch"])
    for log in logs:
        if log.exists():
            rows = pd.read_csv(log)
            rows[rows["epoch"] < epoch].to_csv(log, index=False)
    return epoch


def train(shards_dir: Path, out_dir: Path, recovery_root: Path, live_dir: Path, model: str, hyperparameters: dict,
          epochs: int, batch_size: int, learning_rate: float, beta_1: float, beta_2: float, epsilon: float,
          shuffle_buffer: int, seed: int, early_stopping_patience: int, mixed_precision: bool | str,
          jit_compile: bool, strategy: str, backend: str, init: str = "", timing_csv: Path | None = None) -> dict:
    """Train `model` on the train split, validating each epoch; return a summary for metrics/.

    `init` names a published tagger (musictag.pretrained) of the same architecture to start from: its
    weights for every layer but the output layer, which is new, sized for the shards' tags (fine-tuning);
    "" starts from Keras' random initialisation.

    `out_dir` receives best.keras (highest validation ROC-AUC), last.keras, config.json and
    history.csv, and `live_dir` the dvclive logs, both when the run completes: all of them the same bytes
    whenever the weights are. The epochs' wall-clock times go to `timing_csv` (`Throughput`), which
    must lie outside those outputs. `recovery_root` holds each configuration's crash-recovery folder
    until its run completes. The params are params.yaml's train section, checked by musictag.params.
    """
    require_backend(backend)
    shards_dir, out_dir, live_dir = map(Path, (shards_dir, out_dir, live_dir))
    index = read_index(shards_dir)
    shaping = {"batch_size": batch_size, "learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2,
               "epsilon": epsilon, "shuffle_buffer": shuffle_buffer, "seed": seed,
               "mixed_precision": mixed_precision, "jit_compile": jit_compile, "strategy": strategy,
               "backend": backend, **({"init": init} if init else {})}
    engine = ENGINES[backend](strategy)  # first: MultiWorkerMirroredStrategy must precede other TF work
    state = RecoveryState(recovery_root, configuration_record(shards_dir, model, hyperparameters, shaping, engine))
    out_dir, state_dir, live_dir = engine.worker_dirs(out_dir, state.directory, live_dir)
    with state.held(state_dir):
        summary = _fit(state, state_dir, shards_dir, index, model, hyperparameters, epochs, shaping,
                       early_stopping_patience, engine, out_dir, live_dir, timing_csv)
        timing = state_dir / "model" / TIMING
        if timing_csv is not None:
            Path(timing_csv).parent.mkdir(parents=True, exist_ok=True)
            os.replace(timing, timing_csv)
        timing.unlink(missing_ok=True)
        replace_dir(state_dir / "model", out_dir)
        replace_dir(state_dir / "live", live_dir)
    return summary


def _fit(state: RecoveryState, state_dir: Path, shards_dir: Path, index: dict, model: str, hyperparameters: dict,
         epochs: int, shaping: dict, early_stopping_patience: int, engine, out_dir: Path, out_live_dir: Path,
         timing_csv: Path | None) -> dict:
    """Train inside `state_dir` (backup/, model/, live/), resuming what this configuration left there, or
    continuing its finished run in `out_dir` when `epochs` was raised."""
    n_mels, n_frames = index["spectrogram_shape"]
    n_tags = len(index["tag_names"])
    batch_size = shaping["batch_size"]
    keras.utils.set_random_seed(shaping["seed"])
    policy = MIXED_PRECISION[shaping["mixed_precision"]] or "float32"
    if keras.mixed_precision.global_policy().name != policy:  # an explicit policy is one object that every
        keras.mixed_precision.set_global_policy(policy)       # layer's config names by its memory address
    backup_dir, run_dir, live_dir = state_dir / "backup", state_dir / "model", state_dir / "live"
    resuming = backup_dir.exists()
    continued = 0
    if not resuming:  # nothing finished yet: whatever an earlier attempt left goes
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(live_dir, ignore_errors=True)
        continued = _continue_finished_run(out_dir, out_live_dir, run_dir, live_dir, state.key, epochs, timing_csv)
    first_epoch = resume_epoch(backup_dir, run_dir / HISTORY, run_dir / TIMING) if resuming else continued
    finished = bool(continued) and stalled(pd.read_csv(run_dir / HISTORY)["val_auc"], early_stopping_patience)

    with engine.scope():
        if continued:  # weights and optimizer state as the finished run left them
            network = keras.saving.load_model(run_dir / LAST_MODEL)
        else:
            network = build_model(model, n_tags=n_tags, n_mels=n_mels, n_frames=n_frames, **hyperparameters)
            if shaping.get("init"):
                start_from_published(network, shaping["init"], model, index["front_end"])
            network.compile(
                optimizer=keras.optimizers.Adam(shaping["learning_rate"], beta_1=shaping["beta_1"],
                                                beta_2=shaping["beta_2"], epsilon=shaping["epsilon"],
                                                name="adam"),  # not Keras' per-process "adam_1", "adam_2"
                loss=keras.losses.BinaryCrossentropy(),
                metrics=[keras.metrics.AUC(multi_label=True, num_labels=n_tags, name="auc"),
                         keras.metrics.AUC(curve="PR", multi_label=True, num_labels=n_tags, name="pr_auc")],
                jit_compile=shaping["jit_compile"],
            )
        accelerate(network)  # built or loaded, the layers are plain Keras ones
        engine.prepare(network, n_mels, n_frames, n_tags)
    data = engine.fit_data(shards_dir, batch_size, shaping["shuffle_buffer"], shaping["seed"], first_epoch, epochs)
    steps = data["steps_per_epoch"]
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": model, "hyperparameters": hyperparameters, "n_tags": n_tags, "tag_names": index["tag_names"],
              "input_shape": [n_mels, n_frames, 1], "parameters": network.count_params(),
              "train": {"epochs": epochs, **shaping}, "front_end": index["front_end"],
              "configuration": state.key, "hardware": hardware(engine)}
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    notice = state.others_notice()
    if notice:
        print(notice)
    start = (f"resuming after epoch {first_epoch}" if resuming else
             f"continuing its finished run after epoch {continued}" if continued else
             "no recovery state: starting at epoch 1")
    print(f"{model}: {network.count_params():,} parameters; {steps} steps of {batch_size} per epoch; "
          f"configuration {state.key}: {start}")

    best_val_auc = _best_so_far(run_dir / HISTORY) if first_epoch else None
    callbacks = [  # the epoch's files first, then the backup that marks it done: a kill between the two
        Throughput(batch_size, steps, run_dir / TIMING),  # reruns the epoch (resume_epoch cuts its log rows)
        keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=bool(first_epoch)),
        Checkpoints(run_dir, best_val_auc),
        keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True),
        LiveLogs(live_dir, resume=bool(first_epoch)),
    ]
    if early_stopping_patience:
        callbacks.append(StopWhenStalled(run_dir / HISTORY, early_stopping_patience))
    if finished:  # the finished run had already stopped improving: more epochs allowed, none trained
        print(f"its finished run stopped improving {early_stopping_patience} epochs before its end: nothing to train")
    else:
        network.fit(epochs=epochs, initial_epoch=continued, callbacks=callbacks, verbose=2, **data)
    return summarize_history(run_dir / HISTORY, model, network.count_params())


def start_from_published(network: keras.Model, name: str, model: str, front_end: dict) -> None:
    """Set every layer of `network` but its output layer to the published tagger `name`'s weights. It must be
    the same architecture with the same options, fed by the same front end (else its weights would read
    other inputs): a one-line MusictagError otherwise."""
    from musictag.pretrained import load

    if model != name:
        raise MusictagError(f"train.init: {name} starts the {name} architecture, but model is {model}")
    published = load(name)
    if front_end != published.front_end:
        differs = sorted(key for key in published.front_end if front_end.get(key) != published.front_end[key])
        raise MusictagError(f"train.init: {name} was trained on another front end; the shards' differ in "
                            f"{', '.join(differs)} (spectrograms.front_end)")
    for layer in network.layers:
        if layer.name != "output" and layer.weights:
            layer.set_weights(published.model.get_layer(layer.name).get_weights())


def _continue_finished_run(out_dir: Path, out_live_dir: Path, run_dir: Path, live_dir: Path, key: str,
                           epochs: int, timing_csv: Path | None) -> int:
    """Epochs done by a finished run of this configuration in `out_dir`, with its model files and logs
    copied into the run folder to continue from, when it ran fewer than `epochs`; else 0 (a fresh run).

    The next epochs then see the data an uninterrupted longer run would have (epochs_of_data), from the
    weights and Adam state of its last.keras. A run asked for fewer epochs than one done starts over:
    its last epoch's model is another one.
    """
    try:
        config = json.loads((out_dir / CONFIG).read_text())
        done = len(pd.read_csv(out_dir / HISTORY))
    except (OSError, ValueError):
        return 0
    if config.get("configuration") != key or not (out_dir / LAST_MODEL).exists() or not 0 < done < epochs:
        return 0
    shutil.copytree(out_dir, run_dir)
    if timing_csv is not None and Path(timing_csv).exists():
        shutil.copy(timing_csv, run_dir / TIMING)
    if out_live_dir.is_dir():
        shutil.copytree(out_live_dir, live_dir)
    return done


def _best_so_far(history_csv: Path) -> float | None:
    """The best validation ROC-AUC of the epochs already logged, so a resumed run keeps best.keras unless
    a later epoch beats it (a fresh ModelCheckpoint would take the first resumed epoch as the best)."""
    if not history_csv.exists():
        return None
    history = pd.read_csv(history_csv)
    return float(history["val_auc"].max()) if len(history) else None


def summarize_history(history_csv: Path, model: str, parameters: int) -> dict:
    """The run's headline figures from its whole log, resumed epochs included (losses stay in the log and
    dvclive's curves: `dvc metrics diff` shows what a person compares)."""
    history = pd.read_csv(history_csv)
    return {"best_val_auc": round(float(history["val_auc"].max()), 4),
            "last_val_auc": round(float(history["val_auc"].iloc[-1]), 4),
            "best_epoch": int(history.loc[history["val_auc"].idxmax(), "epoch"]) + 1,
            "epochs_run": len(history), "model": model, "parameters": parameters}


def without_save_date(keras_file: Path) -> None:
    """Rewrite a `.keras` archive without what changes from one save to the next, so the same weights give
    the same bytes and the same DVC hash: Keras' `date_saved`, the zip entries' times, and the ids that
    link an object shared by several layers (their dtype policy), which are its memory address: renumbered
    1, 2, ... in order of appearance, which links the same objects on loading."""
    with zipfile.ZipFile(keras_file) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(keras_file, "w") as archive:
        for info, data in entries:
            if info.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            archive.writestr(fixed, data)
