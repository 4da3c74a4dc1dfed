"""Real TensorFlow training on tiny shards: checkpoints, logs, seeding, resume after kill -9, bad params."""
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import kill_9_when

from musictag.errors import MusictagError
from musictag.model.training import train
from musictag.params import defaults

# train()'s arguments after the folders, but epochs (each test sets its own): params.yaml's train section, quick
FAST = {"model": "k2c1", "hyperparameters": {},
        **defaults("train", batch_size=8, learning_rate=1e-3, shuffle_buffer=32, seed=5)}
del FAST["epochs"]
TRAIN_IMPORT = ("from musictag.model.engines import select_backend; select_backend('tensorflow'); "
                "from musictag.model.training import train; ")  # a subprocess's start, as the train stage's


def epochs_done(recovery_root) -> int:
    """Epochs finished by the run whose recovery state is under `recovery_root` (0 if none)."""
    done = [0]
    for path in recovery_root.glob("*/backup/training_metadata.json"):
        try:
            done.append(json.loads(path.read_text())["epoch"])
        except ValueError:  # being written
            pass
    return max(done)


def run(tmp_path, tiny_shards, name, epochs, **overrides):
    out = tmp_path / name
    return train(tiny_shards, out / "model", out / "recovery", out / "live", epochs=epochs, **{**FAST, **overrides}), out


def test_training_leaves_checkpoints_config_log_and_dvclive_metrics(tmp_path, tiny_shards):
    summary, out = run(tmp_path, tiny_shards, "a", epochs=2)
    assert summary["epochs_run"] == 2 and 0 <= summary["best_val_auc"] <= 1
    history = pd.read_csv(out / "model" / "history.csv")
    assert list(history["epoch"]) == [0, 1] and {"loss", "val_auc", "val_pr_auc"} <= set(history.columns)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model"] == "k2c1" and config["tag_names"] == ["t0", "t1", "t2", "t3", "t4"]
    model = keras.saving.load_model(out / "model" / "best.keras")
    assert model.predict(np.zeros((1, 96, 1366, 1), np.float32), verbose=0).shape == (1, 5)
    assert (out / "model" / "last.keras").exists() and not list((out / "recovery").iterdir())  # cleaned up
    live = json.loads((out / "live" / "metrics.json").read_text())
    assert "eval" in live or "val_auc" in json.dumps(live)
    assert list((out / "live" / "plots" / "metrics").rglob("*.tsv"))


def test_a_retrain_with_the_same_seed_writes_the_same_bytes(tmp_path, tiny_shards):
    """Same seed, same data: the same weights, so the same model folder and logs, file for file, byte for
    byte (DVC's hash of data/model with them), from two processes (where Keras' objects lie at other
    addresses), as two `dvc repro` runs are; the epochs' times go to their own file."""
    summaries = []
    for name in ("a", "b"):
        out = tmp_path / name
        script = (f"import json; {TRAIN_IMPORT}print(json.dumps(train({str(tiny_shards)!r}, "
                  f"{str(out / 'model')!r}, {str(out / 'recovery')!r}, {str(out / 'live')!r}, epochs=1, "
                  f"timing_csv={str(out / 'timing.csv')!r}, **{FAST!r})))")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        summaries.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert summaries[0] == summaries[1]
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    keras.saving.load_model(out_b / "model" / "best.keras")  # the renumbered shared objects still load
    for folder in ("model", "live"):
        files_a = sorted(p.relative_to(out_a) for p in (out_a / folder).rglob("*") if p.is_file())
        assert files_a and files_a == sorted(p.relative_to(out_b) for p in (out_b / folder).rglob("*") if p.is_file())
        for name in files_a:
            assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name
    timing = pd.read_csv(tmp_path / "a" / "timing.csv")
    assert list(timing["epoch"]) == [0] and (timing["examples_per_s"] > 0).all()
    assert not (out_b / "model" / "timing.csv").exists()


def test_kill_9_mid_run_then_rerun_continues_from_the_last_epoch(tmp_path, tiny_shards):
    out = tmp_path / "k"
    script = (f"{TRAIN_IMPORT} train({str(tiny_shards)!r}, {str(out / 'model')!r}, "
              f"{str(out / 'recovery')!r}, {str(out / 'live')!r}, epochs=4, **{FAST!r})")
    kill_9_when(script, lambda: epochs_done(out / "recovery") >= 1)
    finished = epochs_done(out / "recovery")
    assert 1 <= finished < 4 and not (out / "model").exists()  # outputs appear only when a run completes

    summary = train(tiny_shards, out / "model", out / "recovery", out / "live", epochs=4, **FAST)
    history = pd.read_csv(out / "model" / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2, 3]  # no epoch redone, none skipped
    assert summary["epochs_run"] == 4 and not list((out / "recovery").iterdir())


def test_kill_9_then_a_changed_configuration_starts_fresh_and_the_killed_one_still_resumes(tmp_path, tiny_shards,
                                                                                          capsys):
    """The issue-17 scenario: state left by a killed run is never resumed by another configuration."""
    out = tmp_path / "k"
    script = (f"{TRAIN_IMPORT} train({str(tiny_shards)!r}, {str(out / 'model')!r}, "
              f"{str(out / 'recovery')!r}, {str(out / 'live')!r}, epochs=4, **{FAST!r})")
    kill_9_when(script, lambda: epochs_done(out / "recovery") >= 1)
    killed_state = sorted(p for p in (out / "recovery").iterdir() if p.is_dir())
    assert len(killed_state) == 1 and epochs_done(out / "recovery") >= 1

    changed = {**FAST, "seed": 7}
    train(tiny_shards, out / "model", out / "recovery", out / "live", epochs=2, **changed)
    printed = capsys.readouterr().out
    assert "no recovery state: starting at epoch 1" in printed and "resuming" not in printed
    assert "1 other configuration(s)" in printed and "train.seed" in printed
    clean, clean_out = run(tmp_path, tiny_shards, "clean", epochs=2, seed=7)
    history = pd.read_csv(out / "model" / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert history["loss"].tolist() == pd.read_csv(clean_out / "model" / "history.csv")["loss"].tolist()
    assert killed_state[0].exists()  # the killed configuration's state is kept for its own rerun

    train(tiny_shards, out / "model", out / "recovery", out / "live", epochs=4, **FAST)
    assert "resuming after epoch" in capsys.readouterr().out
    assert list(pd.read_csv(out / "model" / "history.csv")["epoch"]) == [0, 1, 2, 3]
    assert not list((out / "recovery").iterdir())


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_shards):
    """Three epochs uninterrupted: what resumed and continued runs must end as."""
    return run(tmp_path_factory.mktemp("straight"), tiny_shards, "straight", epochs=3)


def test_raising_epochs_continues_the_finished_run_as_if_it_had_run_longer(tmp_path, tiny_shards, capsys,
                                                                           straight_run):
    straight, out_a = straight_run
    run(tmp_path, tiny_shards, "longer", epochs=2)
    capsys.readouterr()
    longer, out_b = run(tmp_path, tiny_shards, "longer", epochs=3)
    assert "continuing its finished run after epoch 2" in capsys.readouterr().out
    history_a = pd.read_csv(out_a / "model" / "history.csv")
    history_b = pd.read_csv(out_b / "model" / "history.csv")
    assert list(history_b["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(history_b["loss"], history_a["loss"], rtol=1e-5)
    assert longer["best_val_auc"] == pytest.approx(straight["best_val_auc"], abs=1e-4)
    run(tmp_path, tiny_shards, "longer", epochs=2)  # fewer epochs than done: another run, from scratch
    assert "starting at epoch 1" in capsys.readouterr().out


def test_the_configuration_record_changes_with_what_shapes_training_only(tmp_path, tiny_shards):
    import shutil

    from musictag.model.engines import ENGINES
    from musictag.model.recovery import key_of
    from musictag.model.training import configuration_record

    shaping = {"batch_size": 8, "learning_rate": 1e-3, "seed": 5}
    engine = ENGINES["tensorflow"]("default")

    def configuration_record(shards, model, hyperparameters, shaping, record=configuration_record):
        return record(shards, model, hyperparameters, shaping, engine)

    base = key_of(configuration_record(tiny_shards, "k2c1", {}, shaping))
    assert key_of(configuration_record(tiny_shards, "k2c1", {}, dict(shaping))) == base  # deterministic
    assert key_of(configuration_record(tiny_shards, "k1c2", {}, shaping)) != base
    assert key_of(configuration_record(tiny_shards, "k2c1", {"widths": [8]}, shaping)) != base
    assert key_of(configuration_record(tiny_shards, "k2c1", {}, {**shaping, "learning_rate": 1e-4})) != base
    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards, copy)
    assert key_of(configuration_record(copy, "k2c1", {}, shaping)) == base  # content, not location or dates
    shard = sorted(copy.glob("train-*"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert key_of(configuration_record(copy, "k2c1", {}, shaping)) != base


def test_one_configuration_trains_in_one_process_at_a_time(tmp_path):
    from musictag.model.recovery import RecoveryState

    state = RecoveryState(tmp_path, {"model": "k2c1"})
    with state.held():
        with pytest.raises(MusictagError, match="another process is training this configuration"):
            with RecoveryState(tmp_path, {"model": "k2c1"}).held():
                pass
    assert not list(tmp_path.iterdir())  # removed when the run completed


def test_state_whose_record_differs_under_the_same_key_is_removed(tmp_path, capsys):
    from musictag.model.recovery import RECORD, RecoveryState

    state = RecoveryState(tmp_path, {"model": "k2c1"})
    (state.directory / "backup").mkdir(parents=True)
    (state.directory / RECORD).write_text('{"model": "k1c2"}')
    with state.held() as directory:
        assert not (directory / "backup").exists()
        assert json.loads((directory / RECORD).read_text()) == {"model": "k2c1"}
    assert "another configuration under the same key; removed" in capsys.readouterr().out


def test_an_unknown_model_fails_before_any_work(tmp_path, tiny_shards):
    """The other train params the schema checks (tests/test_params.py); a wrong backend, test_engines.py."""
    with pytest.raises(MusictagError, match="model: unknown architecture 'resnet50'"):
        train(tiny_shards, tmp_path / "m", tmp_path / "b", tmp_path / "l", epochs=1, **{**FAST, "model": "resnet50"})
    assert not (tmp_path / "m").exists()


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, tiny_shards, straight_run):
    """Stop after epoch 1 (as a kill leaves it), resume to 3 epochs: same weights as 3 epochs straight."""
    straight, out_a = straight_run
    out_b = tmp_path / "resumed"

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # like kill -9: the backup of epoch 0 is on disk, the run is gone

    from musictag.model import training
    original_fit = keras.Model.fit

    def fit_then_die(self, *args, callbacks=(), **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, StopAfterFirstEpoch()], **kwargs)

    keras.Model.fit = fit_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            training.train(tiny_shards, out_b / "model", out_b / "recovery", out_b / "live", epochs=3, **FAST)
    finally:
        keras.Model.fit = original_fit
    resumed = training.train(tiny_shards, out_b / "model", out_b / "recovery", out_b / "live", epochs=3, **FAST)
    history_a = pd.read_csv(out_a / "model" / "history.csv")
    history_b = pd.read_csv(out_b / "model" / "history.csv")
    assert list(history_b["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(history_b["loss"], history_a["loss"], rtol=1e-5)
    assert resumed["best_val_auc"] == pytest.approx(straight["best_val_auc"], abs=1e-4)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_multi_worker_strategy_trains_one_model_on_two_local_workers(tmp_path, tiny_shards):
    """Two processes on loopback, TF_CONFIG as on two machines: one epoch, gradients all-reduced."""
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    out, options = tmp_path / "mw", {**FAST, "strategy": "multi_worker"}
    script = (f"{TRAIN_IMPORT} train({str(tiny_shards)!r}, {str(out / 'model')!r}, "
              f"{str(out / 'recovery')!r}, {str(out / 'live')!r}, epochs=1, **{options!r})")
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    try:
        logs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    chief, other = out / "model", out / "model-worker1"  # worker 0 is the chief; the other writes beside it
    assert pd.read_csv(chief / "history.csv")["loss"].tolist() == pd.read_csv(other / "history.csv")["loss"].tolist()
    # trainable weights equal: the gradients were averaged over the workers (batch-norm moving statistics
    # stay each worker's own, as with any tf.distribute strategy without synchronised batch norm)
    models = [keras.saving.load_model(path / "last.keras") for path in (chief, other)]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(*(m.trainable_weights for m in models)))
    assert (out / "live" / "metrics.json").exists() and not list((out / "recovery").iterdir())


def test_early_stopping_reads_the_whole_log(tmp_path):
    """The stop is decided from history.csv, so epochs logged before a resume count."""
    from types import SimpleNamespace

    from musictag.model.training import StopWhenStalled

    log = tmp_path / "history.csv"
    callback = StopWhenStalled(log, patience=2)
    network = SimpleNamespace(stop_training=False)
    callback.set_model(network)
    pd.DataFrame({"epoch": [0, 1, 2], "val_auc": [0.6, 0.7, 0.65]}).to_csv(log, index=False)
    callback.on_epoch_end(2)
    assert not network.stop_training
    pd.DataFrame({"epoch": [0, 1, 2, 3], "val_auc": [0.6, 0.7, 0.65, 0.7]}).to_csv(log, index=False)
    callback.on_epoch_end(3)
    assert network.stop_training  # two epochs since the best, the tie no improvement


def test_a_finished_run_that_had_stopped_improving_is_not_continued(tmp_path, tiny_shards, capsys):
    _, out = run(tmp_path, tiny_shards, "stalled", epochs=2, early_stopping_patience=0)
    history = pd.read_csv(out / "model" / "history.csv")
    history["val_auc"] = [0.7, 0.6]  # its best epoch the first: with patience 1 it would have stopped there
    history.to_csv(out / "model" / "history.csv", index=False)
    capsys.readouterr()
    summary, _ = run(tmp_path, tiny_shards, "stalled", epochs=4, early_stopping_patience=1)
    assert "nothing to train" in capsys.readouterr().out
    assert summary["epochs_run"] == 2 and len(pd.read_csv(out / "model" / "history.csv")) == 2


def test_fine_tuning_starts_from_the_published_weights_with_a_new_output_layer(tmp_path, tiny_shards):
    """train.init: msd-crnn trains the MSD CRNN on the shards' own tags; after one epoch its first kernel is
    still nearly the published one (a scratch start is uncorrelated with it), and the config says how it began."""
    from musictag.pretrained import load

    summary, out = run(tmp_path, tiny_shards, "tuned", epochs=1, model="msd-crnn", init="msd-crnn")
    tuned = keras.saving.load_model(out / "model" / "last.keras")
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["train"]["init"] == "msd-crnn" and summary["model"] == "msd-crnn"
    assert tuned.get_layer("output").units == len(config["tag_names"]) != 50
    published = load("msd-crnn").model.get_layer("unit1_conv").get_weights()[0].ravel()
    scratch, _ = run(tmp_path, tiny_shards, "scratch", epochs=1, model="msd-crnn")
    from_scratch = keras.saving.load_model(tmp_path / "scratch" / "model" / "last.keras")
    correlation = {name: np.corrcoef(model.get_layer("unit1_conv").get_weights()[0].ravel(), published)[0, 1]
                   for name, model in (("tuned", tuned), ("scratch", from_scratch))}
    assert correlation["tuned"] > 0.99 and abs(correlation["scratch"]) < 0.5, correlation


@pytest.mark.parametrize("overrides, message", [
    ({"model": "k2c1", "init": "msd-crnn"}, "train.init: msd-crnn starts the msd-crnn architecture, but model is k2c1"),
])
def test_fine_tuning_needs_the_published_architecture(tmp_path, tiny_shards, overrides, message):
    with pytest.raises(MusictagError, match=message):
        run(tmp_path, tiny_shards, "bad", epochs=1, **overrides)


def test_fine_tuning_needs_the_published_front_end():
    from musictag.model.architectures import build_model
    from musictag.model.training import start_from_published
    from musictag.pretrained import MSD_FRONT_END

    network = build_model("msd-crnn", n_tags=3, n_mels=96, n_frames=1366)
    with pytest.raises(MusictagError, match="another front end; the shards' differ in sample_rate_hz, top_db"):
        start_from_published(network, "msd-crnn", "msd-crnn", {**MSD_FRONT_END, "sample_rate_hz": 16000, "top_db": None})
