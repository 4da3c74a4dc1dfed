"""The spectrogram store's format, owned here: the `spectrograms` stage writes it, `shards` and the tests read it.

A store is a folder of `chunk-*.npy` files, each a float32 array (n_songs, n_mels, n_frames) as np.save
writes it, plus `index.json`: {"shape": [n_mels, n_frames], "dtype": "float32", "front_end": {...},
"chunks": [{"file", "ids"}], "failed": [{"id", "audio_path", "reason", "detail"}]}. A chunk's id is
null where its song failed (its row stays zero). Few large files keep DVC's hashing cheap (MSD is 240k
songs); rows are written in place, by any process, so workers never send a spectrogram back.
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from musictag.errors import MusictagError
from musictag.files import first_line, read_json

INDEX_NAME = "index.json"
DTYPE = np.dtype("<f4")


def start_chunk(path: Path, n_rows: int, row_shape: tuple[int, ...]) -> list[int]:
    """Create `path` as np.save would write a float32 (n_rows, *row_shape) array, rows still zero;
    return the byte offset of each row, for `write_row`."""
    header = {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": (n_rows, *row_shape)}
    row_bytes = math.prod(row_shape) * DTYPE.itemsize
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        data_offset = handle.tell()
        handle.truncate(data_offset + n_rows * row_bytes)
    return [data_offset + i * row_bytes for i in range(n_rows)]


def write_row(path: Path, offset: int, row: np.ndarray, row_shape: tuple[int, ...]) -> None:
    """Write one song's spectrogram at byte `offset` of a chunk file `start_chunk` made."""
    if row.shape != row_shape or row.dtype != DTYPE:
        raise MusictagError(f"{path.name}: a spectrogram of shape {row.shape} ({row.dtype}) where the front end "
                            f"gives {row_shape} (float32)")
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(descriptor, np.ascontiguousarray(row).data, offset)
    finally:
        os.close(descriptor)


def write_index(store_dir: Path, row_shape: tuple[int, ...], front_end: dict, chunks: list[dict],
                failed: list[dict]) -> None:
    """The store's index.json, written last: a folder with an index is a finished store."""
    index = {"shape": list(row_shape), "dtype": "float32", "front_end": front_end, "chunks": chunks, "failed": failed}
    (Path(store_dir) / INDEX_NAME).write_text(json.dumps(index) + "\n")


class SpectrogramStore:
    """A finished store, one song at a time read from its chunk file, so no split is held in RAM.

    Rows are read with plain file reads rather than from memory maps: in shuffled order every row of a
    mapped chunk would stay counted in the process's memory, which then grows with the catalogue.
    """

    def __init__(self, store_dir):
        self.dir = Path(store_dir)
        path = self.dir / INDEX_NAME
        index = read_json(path, "spectrogram index", "run `dvc repro spectrograms`")
        try:
            self.shape = tuple(int(n) for n in index["shape"])
            self.chunks = [(chunk["file"], list(chunk["ids"])) for chunk in index["chunks"]]
        except (KeyError, TypeError, ValueError) as err:
            raise MusictagError(f"{path}: malformed spectrogram index ({first_line(err)})") from None
        self.location = {id_: (name, row) for name, ids in self.chunks for row, id_ in enumerate(ids) if id_ is not None}
        self.n_rows = {name: len(ids) for name, ids in self.chunks}
        self.front_end: dict = index.get("front_end", {})
        self.failed: list[dict] = index.get("failed", [])
        self._data_offset = functools.cache(self._check_chunk)

    def _check_chunk(self, name: str) -> int:
        """The byte offset of the rows in chunk `name`, after checking its .npy header against the index."""
        path = self.dir / name
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(handle)
                offset = handle.tell()
        except (OSError, ValueError) as err:
            raise MusictagError(f"{path}: cannot read spectrogram chunk ({first_line(err)})") from None
        expected = (self.n_rows[name],) + self.shape
        if dtype != DTYPE or shape != expected or fortran_order:
            raise MusictagError(f"{path}: expected float32 of shape {expected}, got {dtype} {shape}")
        if path.stat().st_size < offset + math.prod(expected) * DTYPE.itemsize:
            raise MusictagError(f"{path}: cannot read spectrogram chunk (truncated)")
        return offset

    def __len__(self) -> int:
        return len(self.location)

    def __contains__(self, id_: str) -> bool:
        return id_ in self.location

    def __getitem__(self, id_: str) -> np.ndarray:
        """The float32 log-mel of one song, (n_mels, n_frames)."""
        name, row = self.location[id_]
        row_floats = math.prod(self.shape)
        offset = self._data_offset(name) + row * row_floats * DTYPE.itemsize
        return np.fromfile(self.dir / name, dtype=DTYPE, count=row_floats, offset=offset).reshape(self.shape)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(id, log-mel) of every stored song (not the failed ones), in store order."""
        for _, ids in self.chunks:
            for id_ in ids:
                if id_ is not None:
                    yield id_, self[id_]
