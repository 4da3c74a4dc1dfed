"""Keras backends: the shards read without TensorFlow, training under JAX (its CPU build), one `.keras` file
for every backend, and TensorFlow against JAX on the same model and data."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from musictag.errors import MusictagError
from musictag.features import shard_reader
from musictag.params import defaults


def run_under_jax(script: str) -> dict:
    """Run `script` in a fresh Python on the JAX backend; it prints one JSON line last, returned here."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    code = "from musictag.model.engines import select_backend\nselect_backend('jax')\n" + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_numpy_reader_gives_tf_datas_batches(tiny_shards):
    """Unshuffled and read one shard at a time, both readers give the same bytes in the same order."""
    from musictag.features.shard_dataset import make_dataset

    for split in ("train", "valid"):
        ours = list(shard_reader.epoch_batches(tiny_shards, split, 5, with_ids=True, parallel_reads=1))
        theirs = list(make_dataset(tiny_shards, split, 5, with_ids=True, num_parallel_reads=1).as_numpy_iterator())
        assert len(ours) == len(theirs) == shard_reader.steps_per_epoch(shard_reader.read_index(tiny_shards), split, 5)
        for (x, y, ids), (tx, ty, tids) in zip(ours, theirs):
            np.testing.assert_array_equal(x, tx)
            np.testing.assert_array_equal(y, ty)
            assert ids == [i.decode() for i in tids]


def test_each_epochs_order_comes_from_its_seed_alone(tiny_shards):
    def order(seed, batch_size=4, **options):
        return [i for _, _, ids in shard_reader.prefetched(shard_reader.epoch_batches(
            tiny_shards, "train", batch_size, shuffle=True, shuffle_buffer=6, seed=seed, with_ids=True, **options))
                for i in ids]

    first = order(7)
    assert order(7) == first  # a resumed run reads epoch e exactly as the uninterrupted one did
    assert order(8) != first and sorted(order(8)) == sorted(first)
    assert len(first) == len(set(first)) == 32
    assert order(7, batch_size=5) == first  # the batch size does not change the order
    assert order(7, batch_size=5, multiple_of=3) == first[:30]  # the short batch (2) cut to a multiple of 3


def test_a_damaged_shard_is_one_error_naming_it(tiny_shards, tmp_path):
    import shutil

    damaged = tmp_path / "shards"
    shutil.copytree(tiny_shards, damaged)
    victim = sorted(damaged.glob("train-*.tfrecord"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(MusictagError, match=rf"{victim.name}: (truncated or )?damaged TFRecord"):
        list(shard_reader.epoch_batches(damaged, "train", 8))
    victim.write_bytes(bytes(data[:100]))
    with pytest.raises(MusictagError, match=rf"{victim.name}: truncated"):
        list(shard_reader.epoch_batches(damaged, "train", 8))


@pytest.fixture(scope="module")
def jax_run(tiny_shards, tmp_path_factory):
    """Two epochs of k2c1 under JAX through musictag.model.training, as `train.backend: jax` runs them, and its
    predictions on fixed input."""
    out = tmp_path_factory.mktemp("jax")
    probe = np.random.default_rng(0).uniform(-60, 0, size=(3, 96, 1366, 1)).astype(np.float32)
    np.save(out / "probe.npy", probe)
    result = run_under_jax(f"""
        import json, sys
        import numpy as np
        from musictag.inference.tagger import Tagger
        from musictag.model.training import train
        from musictag.params import defaults
        summary = train({str(tiny_shards)!r}, {str(out / 'model')!r}, {str(out / 'recovery')!r}, {str(out / 'live')!r},
                        model="k2c1", hyperparameters={{}}, timing_csv={str(out / 'timing.csv')!r},
                        **defaults("train", epochs=2, batch_size=8, learning_rate=1e-3, shuffle_buffer=16, seed=5,
                                   backend="jax"))
        tagger = Tagger({str(out / 'model')!r})
        probabilities, _ = tagger.predict_batches([np.load({str(out / 'probe.npy')!r})])
        np.save({str(out / 'jax_probabilities.npy')!r}, probabilities)
        predictions = tagger.predict_shards({str(tiny_shards)!r}, splits=("test",))
        print(json.dumps({{"summary": summary, "tensorflow_loaded": "tensorflow" in sys.modules,
                          "predicted_ids": predictions.ids.tolist()}}))
    """)
    return out, result


def test_jax_trains_predicts_and_never_loads_tensorflow(jax_run):
    out, result = jax_run
    assert not result["tensorflow_loaded"]
    assert result["summary"]["epochs_run"] == 2 and 0 <= result["summary"]["best_val_auc"] <= 1
    assert {p.name for p in (out / "model").iterdir()} == {"best.keras", "last.keras", "config.json", "history.csv"}
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["train"]["backend"] == "jax" and "jax" in config["hardware"]
    assert len(result["predicted_ids"]) == 16
    assert list((out / "live" / "plots" / "metrics" / "eval").glob("auc.tsv"))  # dvclive's names, without dvclive.keras


def test_a_model_trained_under_jax_predicts_alike_under_tensorflow(jax_run):
    """The same .keras file on another backend: same architecture, weights, and (to float32 rounding) outputs."""
    from musictag.inference.tagger import Tagger

    out, _ = jax_run
    probabilities, _ = Tagger(out / "model").predict_batches([np.load(out / "probe.npy")])
    np.testing.assert_allclose(probabilities, np.load(out / "jax_probabilities.npy"), atol=1e-5)


FIRST_EPOCH = """
    import json
    import keras
    import numpy as np
    from musictag.features import shard_reader
    batches = list(shard_reader.epoch_batches({shards!r}, "train", 8))
    losses = {{}}
    for learning_rate in {learning_rates!r}:
        keras.utils.set_random_seed(0)
        model = keras.saving.load_model({initial!r})
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.BinaryCrossentropy())
        losses[learning_rate] = [float(model.train_on_batch(x, y)) for x, y in batches]
    print(json.dumps({{"losses": losses}}))
"""


def test_tensorflow_and_jax_train_the_same_model_alike(tiny_shards, tmp_path):
    """One epoch from the same initial weights over the same batches in the same order (k2c1 at a quarter of
    its widths, Adam, batch 8).

    The forward pass, the first gradient and the first Adam step are the same up to float32 rounding (steps 1
    and 2 within 1e-5). After that the backends drift apart by more than rounding: Adam divides each
    gradient by its own running magnitude, so a near-zero gradient whose sign differs between XLA's and
    oneDNN's summation order becomes a full +-lr step (full-width k2c1: the loss of step 4 differs by ~0.7%,
    measured). The epoch's mean loss, what training reports, stays within 1%; a real difference is larger:
    a learning rate 10% higher moves it by more than 3% (checked on JAX itself)."""
    import keras

    from musictag.model.architectures import build_model

    keras.utils.set_random_seed(0)
    build_model("k2c1", n_tags=5, n_mels=96, n_frames=1366, widths=(38, 38, 38, 76, 76)).save(tmp_path / "initial.keras")
    script = FIRST_EPOCH.format(initial=str(tmp_path / "initial.keras"), shards=str(tiny_shards),
                                learning_rates=(1e-3, 1.1e-3))
    local: dict = {}
    exec(textwrap.dedent(script.replace("(1e-3, 1.1e-3)", "(1e-3,)")).replace("print(json.dumps(", "local.update(("),
         {"local": local})
    tensorflow_losses = local["losses"][1e-3]
    jax = run_under_jax(script)["losses"]
    jax_losses, faster = jax["0.001"], jax["0.0011"]
    assert len(jax_losses) == len(tensorflow_losses) == 4
    np.testing.assert_allclose(jax_losses[:2], tensorflow_losses[:2], rtol=1e-5)
    assert np.mean(jax_losses) == pytest.approx(np.mean(tensorflow_losses), rel=1e-2)
    assert np.mean(faster) != pytest.approx(np.mean(jax_losses), rel=3e-2)


def test_jax_trains_in_bfloat16(tiny_shards, tmp_path):
    """`mixed_precision: bfloat16` on JAX: bfloat16 compute, float32 weights. (`strategy: mirrored` over
    several devices is not run here: XLA's CPU build simulates devices, but on two cores their collectives
    deadlock waiting for threads, so data parallelism needs a machine with several GPUs to be checked.)"""
    result = run_under_jax(f"""
        import json, keras
        from musictag.model.training import train
        from musictag.params import defaults
        summary = train({str(tiny_shards)!r}, {str(tmp_path / 'model')!r}, {str(tmp_path / 'recovery')!r},
                        {str(tmp_path / 'live')!r}, model="k2c1", hyperparameters={{}},
                        **defaults("train", epochs=1, batch_size=8, learning_rate=1e-3, shuffle_buffer=16, seed=5,
                                   backend="jax", strategy="mirrored", mixed_precision="bfloat16"))
        model = keras.saving.load_model({str(tmp_path / 'model' / 'last.keras')!r})
        print(json.dumps({{"summary": summary, "policy": keras.mixed_precision.global_policy().name,
                          "weights": sorted({{w.dtype for w in model.weights}})}}))
    """)
    assert result["policy"] == "mixed_bfloat16" and result["weights"] == ["float32"]
    assert 0 <= result["summary"]["best_val_auc"] <= 1


def test_a_backend_other_than_keras_own_fails_before_any_work(tmp_path, tiny_shards):
    """A known backend other than the one Keras runs on: only train() can tell (tests/test_params.py checks
    unknown backends and mixed_precision values)."""
    from musictag.model.training import train

    options = defaults("train", epochs=1, batch_size=8, backend="jax")  # this process runs Keras on TensorFlow
    with pytest.raises(MusictagError, match="train.backend"):
        train(tiny_shards, tmp_path / "m", tmp_path / "r", tmp_path / "l", model="k2c1", hyperparameters={}, **options)


def test_importing_training_leaves_the_process_as_it_was():
    """No import-time side effects: only select_backend (an entry point's first call) sets the oneDNN switch."""
    script = ("import json, os; env = dict(os.environ); import musictag.model.training; "
              "print(json.dumps(dict(os.environ) == env))")
    env = {key: value for key, value in os.environ.items() if key not in ("TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) is True
