"""The shards as a tf.data.Dataset: training's input pipeline on the TensorFlow backend.

Everything runs in the TensorFlow graph: shard files read several at a time and interleaved, shuffled
(shard order and a buffer of examples, reshuffled every epoch), whole batches parsed at once. The other
backends read the same files without TensorFlow (musictag.features.shard_reader), which also owns the index
and each split's layout that both start from.
"""
from __future__ import annotations

import tensorflow as tf

from musictag.features.shard_reader import open_split, steps_per_epoch

SPECTROGRAM_DTYPES = {"float16": tf.float16, "float32": tf.float32}  # the shards' spectrogram_dtype values


def make_dataset(shards_dir, split: str, batch_size: int, shuffle: bool = False, shuffle_buffer: int = 1024,
                 seed: int | None = None, repeat: bool = False, with_ids: bool = False,
                 num_parallel_reads: int = tf.data.AUTOTUNE) -> tf.data.Dataset:
    """Batches of (spectrogram float32 (batch, n_mels, n_frames, 1), target float32 (batch, n_tags)),
    plus ids (batch,) bytes if `with_ids`. Every epoch holds each example once and ends with a short batch.

    All in the TensorFlow graph: shard files read `num_parallel_reads` at a time and interleaved; with
    `shuffle`, shard order and a `shuffle_buffer` of examples reshuffled every epoch (seeded); whole batches
    parsed at once. The interleaved order depends on `num_parallel_reads`, so for the same order on another
    machine pass a number, not AUTOTUNE (which follows the core count).
    """
    split_files = open_split(shards_dir, split, batch_size, shuffle_buffer)
    n_mels, n_frames = split_files.spectrogram_shape
    n_tags = split_files.n_tags
    dtype = SPECTROGRAM_DTYPES[split_files.spectrogram_dtype]
    features = {name: tf.io.FixedLenFeature([], tf.string) for name in ("id", "spectrogram", "target")}

    def parse(serialized):
        """(batch,) serialized Examples -> the model's tensors, one op per feature for the whole batch."""
        parsed = tf.io.parse_example(serialized, features)
        spectrogram = tf.cast(tf.io.decode_raw(parsed["spectrogram"], dtype, little_endian=True), tf.float32)
        target = tf.cast(tf.io.decode_raw(parsed["target"], tf.uint8), tf.float32)
        batch = (tf.reshape(spectrogram, [-1, n_mels, n_frames, 1]), tf.reshape(target, [-1, n_tags]))
        return batch + (parsed["id"],) if with_ids else batch

    files = tf.data.Dataset.from_tensor_slices([str(path) for path in split_files.paths])
    if shuffle:
        files = files.shuffle(len(split_files.paths), seed=seed, reshuffle_each_iteration=True)
    records = tf.data.TFRecordDataset(files, compression_type=split_files.compression,
                                      num_parallel_reads=num_parallel_reads)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = records.batch(batch_size, drop_remainder=False).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if repeat:  # after batching, so epochs stay whole and steps_per_epoch batches are exactly one epoch
        dataset = dataset.repeat()
    else:  # a known length lets Keras end validation without an "input ran out of data" warning
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps_per_epoch(split_files.index, split, batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE)
