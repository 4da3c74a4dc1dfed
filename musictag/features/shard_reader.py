"""Reading the TFRecord shards without TensorFlow: the input pipeline of the other Keras backends (JAX).

musictag.features.shard_writer writes the shards (and feeds TensorFlow through tf.data); this module reads the same
files with numpy, protobuf and crc32c alone, so a machine with JAX but no TensorFlow trains from them.
It keeps what the tf.data path guarantees: every epoch holds each example once and ends with a short
batch; with `shuffle`, the shard order and a `shuffle_buffer` of examples are reshuffled every epoch from
`seed + epoch` only (so a run resumed at epoch k reads what an uninterrupted one would); shards are read
`parallel_reads` at a time by threads and interleaved one record from each in turn (a fixed number, so
the order is the same on every machine); batches are assembled ahead of the consumer (`prefetch`).

Also what both readers start from: the shards' index (`read_index`, `steps_per_epoch`) and one split's files
and example layout (`open_split`).
"""
from __future__ import annotations

import functools
import gzip
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import numpy as np

from musictag.errors import MusictagError
from musictag.files import first_line, read_json

INDEX_NAME = "index.json"
PARALLEL_READS = 4  # shards open at once: fixed, so the interleaved order does not follow the core count
PREFETCH_BATCHES = 4


# --- the index ---------------------------------------------------------------------------------------------

def read_index(shards_dir) -> dict:
    """The index write_shards left beside the shards: shard files, counts, tag names, spectrogram layout."""
    return read_json(Path(shards_dir) / INDEX_NAME, "shard index", "run `dvc repro shards`")


def split_entry(index: dict, split: str, where) -> dict:
    """The index's entry of `split` (its shards and example count); a missing or empty split is an error."""
    if split not in index["splits"]:
        raise MusictagError(f"{where}: no split '{split}'; the shards hold {', '.join(index['splits'])}")
    entry = index["splits"][split]
    if entry["n_examples"] == 0:
        raise MusictagError(f"{where}: split '{split}' has no examples")
    return entry


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MusictagError(f"{name}: need an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class SplitFiles:
    """One split's shard files in index order, and what parsing their examples needs."""

    index: dict
    paths: list[Path]
    compression: str  # "", "GZIP" or "ZLIB"
    spectrogram_shape: tuple[int, int]  # (n_mels, n_frames)
    spectrogram_dtype: str  # "float16" or "float32", little-endian in the records
    n_tags: int


def open_split(shards_dir, split: str, batch_size: int, shuffle_buffer: int) -> SplitFiles:
    """The start of every reader of `split`: its arguments checked, the index read, the split's files listed;
    a one-line error for a bad batch size or buffer, a missing index, or a missing or empty split."""
    check_positive("batch_size", batch_size)
    check_positive("shuffle_buffer", shuffle_buffer)
    shards_dir = Path(shards_dir)
    index = read_index(shards_dir)
    entry = split_entry(index, split, shards_dir)
    return SplitFiles(index, [shards_dir / shard["file"] for shard in entry["shards"]], index["compression"],
                      tuple(index["spectrogram_shape"]), index["spectrogram_dtype"], len(index["tag_names"]))


def steps_per_epoch(index: dict, split: str, batch_size: int, multiple_of: int = 1) -> int:
    """Batches in one pass over `split`, the last one short: cut to a multiple of `multiple_of` (the devices
    a batch is split over), and so left out when fewer examples than that remain."""
    check_positive("batch_size", batch_size)
    n_examples = split_entry(index, split, "shard index")["n_examples"]
    short = n_examples % batch_size
    return n_examples // batch_size + (short >= multiple_of)


# --- records -----------------------------------------------------------------------------------------------

def _masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated and offset so that a CRC of CRCs stays informative."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: Path, compression: str) -> BinaryIO:
    if compression == "GZIP":
        return gzip.open(path, "rb")
    if compression == "ZLIB":
        return _ZlibReader(path)
    return open(path, "rb", buffering=1 << 20)


class _ZlibReader:
    """A file read through zlib's decompressor: what TFRecord's "ZLIB" compression is (gzip has a reader)."""

    def __init__(self, path: Path):
        self.file, self.inflate, self.pending = open(path, "rb"), zlib.decompressobj(), b""

    def read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.file.read(1 << 20)
            if not chunk:
                self.pending += self.inflate.flush()
                break
            self.pending += self.inflate.decompress(chunk)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def close(self) -> None:
        self.file.close()


def read_records(path: Path, compression: str = "") -> Iterator[bytes]:
    """The records of one TFRecord file, each checked against its CRC-32C (length and data): a truncated
    or damaged shard is one error naming it, never a silently short epoch."""
    handle = _open(path, compression)
    try:
        while header := handle.read(12):
            if len(header) < 12:
                raise MusictagError(f"{path}: truncated TFRecord (a record header cut short)")
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc(header[:8]) != length_crc:
                raise MusictagError(f"{path}: damaged TFRecord (a record length fails its checksum)")
            data, (data_crc,) = handle.read(length), struct.unpack("<I", handle.read(4) or b"\0\0\0\0")
            if len(data) < length or _masked_crc(data) != data_crc:
                raise MusictagError(f"{path}: truncated or damaged TFRecord (a record fails its checksum)")
            yield data
    except (OSError, EOFError, zlib.error) as err:
        raise MusictagError(f"{path}: cannot read TFRecord ({first_line(err)})") from None
    finally:
        handle.close()


# --- examples ----------------------------------------------------------------------------------------------

@functools.cache
def _example_class():
    """tf.train.Example's message class, built from its schema (tensorflow/core/example/*.proto) with the
    protobuf library: TensorFlow's own generated class would import TensorFlow."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="musictag_example.proto", package="tensorflow", syntax="proto3")
    optional, repeated = (descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                          descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    types = descriptor_pb2.FieldDescriptorProto

    def message(name, *fields):
        added = proto.message_type.add(name=name)
        for number, (field_name, label, kind, type_name) in enumerate(fields, start=1):
            field = added.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = type_name
        return added

    message("BytesList", ("value", repeated, types.TYPE_BYTES, None))
    message("FloatList", ("value", repeated, types.TYPE_FLOAT, None))
    message("Int64List", ("value", repeated, types.TYPE_INT64, None))
    feature = message("Feature", ("bytes_list", optional, types.TYPE_MESSAGE, ".tensorflow.BytesList"),
                      ("float_list", optional, types.TYPE_MESSAGE, ".tensorflow.FloatList"),
                      ("int64_list", optional, types.TYPE_MESSAGE, ".tensorflow.Int64List"))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=optional, type=types.TYPE_STRING)
    entry.field.add(name="value", number=2, label=optional, type=types.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=repeated, type=types.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")
    message("Example", ("features", optional, types.TYPE_MESSAGE, ".tensorflow.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(record: bytes, spectrogram_dtype: np.dtype, shape: tuple[int, int], n_tags: int
                  ) -> tuple[str, np.ndarray, np.ndarray]:
    """(id, spectrogram (n_mels, n_frames) as stored, target (n_tags,) uint8) of one serialized Example."""
    example = _example_class().FromString(record)
    feature = example.features.feature
    spectrogram = np.frombuffer(feature["spectrogram"].bytes_list.value[0], spectrogram_dtype).reshape(shape)
    target = np.frombuffer(feature["target"].bytes_list.value[0], np.uint8)
    if target.shape != (n_tags,):
        raise MusictagError(f"an example holds {target.size} targets where the shard index lists {n_tags} tags")
    return feature["id"].bytes_list.value[0].decode(), spectrogram, target


# --- batches -----------------------------------------------------------------------------------------------

def _read_ahead(items: Iterator, depth: int = 8) -> Iterator:
    """`items`, produced by a thread up to `depth` ahead of the consumer (file reads, checksums and numpy
    release the GIL); an error reaches the consumer, and a consumer that stops early stops the thread."""
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def fill():
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            put(err)

    threading.Thread(target=fill, daemon=True).start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def interleave(paths: list[Path], compression: str, parallel_reads: int = PARALLEL_READS) -> Iterator[bytes]:
    """Records of `paths`, `parallel_reads` files at a time, one record from each in turn; a file that ends
    gives its place to the next (tf.data's interleave with block length 1, in a deterministic order)."""
    pending = iter(paths)

    def open_next() -> Iterator[bytes] | None:
        path = next(pending, None)
        return None if path is None else _read_ahead(read_records(path, compression))

    slots = [reader for reader in (open_next() for _ in range(parallel_reads)) if reader is not None]
    while slots:
        for position, reader in enumerate(slots):
            record = next(reader, None)
            while record is None and reader is not None:  # this file ended: the next one takes its place
                reader = slots[position] = open_next()
                record = None if reader is None else next(reader, None)
            if record is not None:
                yield record
        slots = [reader for reader in slots if reader is not None]


def shuffled(records: Iterator[bytes], buffer_size: int, rng: np.random.Generator) -> Iterator[bytes]:
    """A streaming shuffle, as tf.data's: a buffer of `buffer_size` records, each output drawn from it at
    random and replaced by the next record; the rest drained in random order."""
    buffer: list[bytes] = []
    for record in records:
        if len(buffer) < buffer_size:
            buffer.append(record)
            continue
        slot = int(rng.integers(buffer_size))
        yield buffer[slot]
        buffer[slot] = record
    for slot in rng.permutation(len(buffer)):
        yield buffer[slot]


def epoch_batches(shards_dir, split: str, batch_size: int, shuffle: bool = False, shuffle_buffer: int = 1024,
                  seed: int = 0, multiple_of: int = 1, with_ids: bool = False,
                  parallel_reads: int = PARALLEL_READS) -> Iterator[tuple]:
    """One epoch of batches of (spectrogram float32 (batch, n_mels, n_frames, 1), target float32
    (batch, n_tags)), plus the ids (a list) if `with_ids`; the last batch short, cut to a multiple of
    `multiple_of` (see `steps_per_epoch`). With `shuffle`, the shard order and the streaming shuffle come
    from `seed` alone: pass `seed + epoch` for a new order every epoch."""
    files = open_split(shards_dir, split, batch_size, shuffle_buffer)
    dtype = np.dtype(files.spectrogram_dtype).newbyteorder("<")
    paths = files.paths
    rng = np.random.default_rng(seed)
    if shuffle:
        paths = [paths[i] for i in rng.permutation(len(paths))]
    records = interleave(paths, files.compression, parallel_reads)
    if shuffle:
        records = shuffled(records, shuffle_buffer, rng)
    rows = []
    for record in records:
        rows.append(parse_example(record, dtype, files.spectrogram_shape, files.n_tags))
        if len(rows) == batch_size:
            yield _batch(rows, with_ids)
            rows = []
    rows = rows[:len(rows) - len(rows) % multiple_of]
    if rows:
        yield _batch(rows, with_ids)


def _batch(rows: list[tuple[str, np.ndarray, np.ndarray]], with_ids: bool) -> tuple:
    ids, spectrograms, targets = zip(*rows)
    batch = (np.stack(spectrograms).astype(np.float32)[..., np.newaxis], np.stack(targets).astype(np.float32))
    return batch + (list(ids),) if with_ids else batch


def prefetched(batches: Iterator[tuple], depth: int = PREFETCH_BATCHES) -> Iterator[tuple]:
    """`batches`, assembled by a background thread up to `depth` ahead of the training step."""
    return _read_ahead(batches, depth)
