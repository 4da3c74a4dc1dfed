"""The Keras backends a run trains on (`train.backend`), and all that differs between them.

The models (Keras layers and `keras.ops`), the loop (`fit`), checkpoints, logs and saved `.keras` files are
the same on every backend; an engine supplies the rest: how batches reach `fit`, how several devices share
the work, and the library versions a run records. ENGINES picks one by name.

- tensorflow (the default): tf.data from the shards (musictag.features.shard_dataset), tf.distribute strategies, and the
  CPU speed-ups of musictag.model.onednn.
- jax: the shards read with numpy alone (musictag.features.shard_reader: TensorFlow is never imported), several
  devices of one machine data-parallel through keras.distribution.

Keras reads its backend once, when it is first imported: `select_backend` must run before that, in the entry
point (stages/, benchmarks, tests/conftest.py); importing a musictag module changes nothing in the process.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from musictag.errors import MusictagError
from musictag.features import shard_reader


def select_backend(name: str) -> None:
    """Make `name` Keras' backend for this process (KERAS_BACKEND) and ready the process for it, before Keras
    is imported: on TensorFlow, oneDNN switched on where it helps (musictag.model.onednn.switch_on_onednn,
    which TensorFlow reads only as it loads); on JAX, Keras kept from loading TensorFlow
    (`keep_keras_off_tensorflow`). The stage scripts call it first thing."""
    require_backend(name)
    os.environ["KERAS_BACKEND"] = name
    if name == "tensorflow" and "keras" not in sys.modules:
        from musictag.model.onednn import switch_on_onednn

        switch_on_onednn()
    if name == "jax":
        keep_keras_off_tensorflow()


def require_backend(name: str) -> None:
    """A one-line error unless Keras is not loaded yet or already runs on `name`: it cannot switch once loaded."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != name:
        raise MusictagError(f"train.backend: {name} asked for, but Keras already runs on "
                            f"{loaded.backend.backend()} in this process (musictag.model.engines.select_backend "
                            "must run before Keras is imported)")


def keep_keras_off_tensorflow() -> None:
    """Work around Keras importing TensorFlow wherever it is installed, whatever the backend: to seed it
    (keras.utils.set_random_seed) and to recognise its types when saving a model. Neither serves the JAX
    backend, which must not load TensorFlow, and no public setting turns it off: Keras' lazy TensorFlow module
    is marked unavailable. Checked against Keras 3.15.1 (keras.src.utils.module_utils.tensorflow)."""
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def _epochs(one_epoch, first_epoch: int, epochs: int):
    """Epochs first_epoch..epochs-1 back to back, epoch e from `one_epoch(e)`: each epoch's order depends
    only on its number, so a run resumed at epoch k sees exactly the batches an uninterrupted run would."""
    data = None
    for epoch in range(first_epoch, epochs):
        data = one_epoch(epoch) if data is None else data.concatenate(one_epoch(epoch))
    return data


class TensorFlowEngine:
    """tf.data input and tf.distribute: one device (the GPU if there is one), `mirrored` (all GPUs of this
    machine) or `multi_worker` (several machines, from TF_CONFIG)."""

    strategies = ("default", "mirrored", "multi_worker")

    def __init__(self, strategy: str):
        import tensorflow as tf

        self.tf, self.strategy = tf, strategy
        self.distribution = {"default": tf.distribute.get_strategy, "mirrored": tf.distribute.MirroredStrategy,
                             "multi_worker": tf.distribute.MultiWorkerMirroredStrategy}[strategy]()

    def versions(self) -> dict:
        return {"tensorflow": self.tf.__version__}

    def gpus(self) -> list[str]:
        return [device.name for device in self.tf.config.list_physical_devices("GPU")]

    def scope(self):
        return self.distribution.scope()

    def worker_dirs(self, *dirs: Path) -> tuple[Path, ...]:
        """The directories this process writes: `dirs` themselves on the chief (or on a single machine).

        In a multi-worker run every worker must save checkpoints too (saving is a collective operation),
        but only the chief's copies are the run's outputs; the others write beside them, suffixed with
        their task, so two workers sharing a disk never write the same file and a crashed worker still
        finds its own BackupAndRestore state.
        """
        if self.distribution.extended.should_checkpoint:
            return dirs
        resolver = self.distribution.cluster_resolver
        return tuple(path.with_name(f"{path.name}-{resolver.task_type}{resolver.task_id}") for path in dirs)

    def prepare(self, network, n_mels: int, n_frames: int, n_tags: int) -> None:
        if self.strategy == "multi_worker":
            build_before_multi_worker_fit(network, n_mels, n_frames, n_tags)
            reduce_scalar_logs_across_workers()

    def fit_data(self, shards_dir: Path, batch_size: int, shuffle_buffer: int, seed: int, first_epoch: int,
                 epochs: int) -> dict:
        """`fit`'s data arguments: training epochs first_epoch.. (epoch e shuffled with seed + e), validation."""
        from musictag.features.shard_dataset import make_dataset

        index = shard_reader.read_index(shards_dir)
        train = _epochs(lambda epoch: make_dataset(shards_dir, "train", batch_size, shuffle=True,
                                                   shuffle_buffer=shuffle_buffer, seed=seed + epoch),
                        first_epoch, epochs)
        valid = make_dataset(shards_dir, "valid", batch_size)
        # Several workers each read the same seeded stream and keep every n-th batch: sharding by file
        # would need at least as many shard files as workers, and would change the order with their number.
        sharding = self.tf.data.Options()
        sharding.experimental_distribute.auto_shard_policy = self.tf.data.experimental.AutoShardPolicy.DATA
        return {"x": train.with_options(sharding), "validation_data": valid.with_options(sharding),
                "steps_per_epoch": shard_reader.steps_per_epoch(index, "train", batch_size)}


def build_before_multi_worker_fit(network, n_mels: int, n_frames: int, n_tags: int) -> None:
    """Work around Keras' fit under MultiWorkerMirroredStrategy learning the input shapes from a first batch
    that it averages over all workers eagerly, which fails (keras-team/keras#20585): the optimizer's and
    metrics' variables are built here from the known shapes, and fit's own build skipped. No public call builds
    a compiled model's metrics. Checked against Keras 3.15.1 (Trainer._symbolic_build)."""
    import keras

    network._symbolic_build(data_batch=(keras.KerasTensor((None, n_mels, n_frames, 1)),
                                        keras.KerasTensor((None, n_tags))))
    network._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def reduce_scalar_logs_across_workers() -> None:
    """Work around Keras averaging each step's logs (loss, metrics) across MultiWorkerMirroredStrategy's workers
    along axis 0, which a scalar lacks (keras-team/keras#20585): under that strategy they are averaged as
    scalars, with Keras' own reduce for every other case; idempotent. Checked against Keras 3.15.1
    (keras.src.backend.tensorflow.trainer.reduce_per_replica)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    keras_reduce = getattr(tf_trainer.reduce_per_replica, "__wrapped__", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = keras_reduce
    tf_trainer.reduce_per_replica = reduce_per_replica


class JaxEngine:
    """The shards read without TensorFlow (musictag.features.shard_reader); `mirrored` splits each batch over every
    device of this machine (keras.distribution.DataParallel). A batch must then split evenly: the batch size
    is a multiple of the devices, and the last short batch of an epoch is cut to one (fewer examples than
    devices are left out of that epoch)."""

    strategies = ("default", "mirrored")

    def __init__(self, strategy: str):
        import jax
        import keras

        self.jax = jax
        self.n_devices = len(jax.devices()) if strategy == "mirrored" else 1
        keras.distribution.set_distribution(keras.distribution.DataParallel() if self.n_devices > 1 else None)

    def versions(self) -> dict:
        import jaxlib

        return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__}

    def gpus(self) -> list[str]:
        return [str(device) for device in self.jax.devices() if device.platform == "gpu"]

    def scope(self):
        return contextlib.nullcontext()

    def worker_dirs(self, *dirs: Path) -> tuple[Path, ...]:
        return dirs

    def prepare(self, network, n_mels: int, n_frames: int, n_tags: int) -> None:
        pass

    def fit_data(self, shards_dir: Path, batch_size: int, shuffle_buffer: int, seed: int, first_epoch: int,
                 epochs: int) -> dict:
        """`fit`'s data arguments, as Python generators read ahead by threads: the training epochs back to
        back (as on TensorFlow), and validation passes over and over, `validation_steps` batches each."""
        if batch_size % self.n_devices:
            raise MusictagError(f"train.batch_size: {batch_size} does not split over {self.n_devices} devices")
        index = shard_reader.read_index(shards_dir)
        devices = self.n_devices

        def train() -> Iterator[tuple]:
            for epoch in range(first_epoch, epochs):
                yield from shard_reader.prefetched(shard_reader.epoch_batches(
                    shards_dir, "train", batch_size, shuffle=True, shuffle_buffer=shuffle_buffer, seed=seed + epoch,
                    multiple_of=devices))

        def valid() -> Iterator[tuple]:
            while True:
                yield from shard_reader.prefetched(shard_reader.epoch_batches(shards_dir, "valid", batch_size,
                                                                              multiple_of=devices))

        return {"x": train(), "validation_data": valid(), "shuffle": False,  # the generators shuffle
                "steps_per_epoch": shard_reader.steps_per_epoch(index, "train", batch_size, devices),
                "validation_steps": shard_reader.steps_per_epoch(index, "valid", batch_size, devices)}


ENGINES = {"tensorflow": TensorFlowEngine, "jax": JaxEngine}
