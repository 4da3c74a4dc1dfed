"""Log-mel extraction for a whole catalogue: parallel, resumable, stored in a few large files.

The store is a directory of `chunk-NNNNN.npy` float32 arrays of shape (n_songs, n_mels, n_frames)
plus `index.json` naming the ids of each chunk. Few large files keep DVC's hashing cheap (MSD is
240k songs); chunks are finished in a scratch directory beside the output that DVC does not delete,
so a rerun after an interruption skips every chunk already written. Work runs on local processes
or, for catalogues that outgrow one machine, on a Dask distributed cluster: both through the
concurrent.futures `Executor.map` interface, so the two give identical arrays. Local workers write
their rows straight into the chunk file (receiving half a megabyte a song in the parent cost ~14%
of the songs/s on 2 cores); Dask workers, which may not see this file system, send them back.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from musictag.audio import spectrogram_of, spectrogram_shape, warm_up
from musictag.errors import MusictagError
from musictag.paths import REPO_ROOT

INDEX_NAME = "index.json"


@contextmanager
def local_executor(workers: int, scheduler_address: str | None = None) -> Iterator[Executor]:
    """A pool of `workers` processes on this machine (0 = all cores), forked: they start with what
    the parent imported and cached (see warm_up)."""
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=fork) as pool:
        yield pool


@contextmanager
def dask_executor(workers: int, scheduler_address: str | None) -> Iterator[Executor]:
    """The workers of a running Dask distributed cluster (`dask scheduler` + `dask worker ADDRESS`)."""
    if not scheduler_address:
        raise MusictagError("spectrograms.scheduler_address: the dask executor needs a scheduler address")
    from distributed import Client

    try:
        client = Client(scheduler_address, timeout="10s")
    except OSError as err:
        raise MusictagError(f"spectrograms.scheduler_address: cannot reach {scheduler_address} ({err})") from None
    with client:
        yield client.get_executor()


# name: (executor, whether its workers share this machine's files and so write their own rows)
EXECUTORS = {"processes": (local_executor, True), "dask": (dask_executor, False)}


def _chunk_name(index: int, ids: list[str], paths: list[str], front_end: dict) -> str:
    """A chunk's file name carries a digest of what it holds, so stale scratch work is never reused.
    Paths inside the repository enter it relative to the root: the store of a clone elsewhere, or of
    another machine, has the same names and so the same DVC hash."""
    portable = [str(Path(path).relative_to(REPO_ROOT)) if Path(path).is_relative_to(REPO_ROOT) else str(path)
                for path in paths]
    digest = hashlib.sha256(json.dumps([ids, portable, front_end], sort_keys=True).encode()).hexdigest()[:12]
    return f"chunk-{index:05d}-{digest}.npy"


def _start_chunk(path: Path, n_rows: int, row_shape: tuple[int, ...]) -> list[int]:
    """Create `path` as np.save would write a float32 (n_rows, *row_shape) array, rows still zero;
    return the byte offset of each row. Rows are then written in place, by any process."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (n_rows, *row_shape)}
    row_bytes = math.prod(row_shape) * np.dtype(np.float32).itemsize
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        data_offset = handle.tell()
        handle.truncate(data_offset + n_rows * row_bytes)
    return [data_offset + i * row_bytes for i in range(n_rows)]


def _write_row(path: Path, offset: int, row: np.ndarray, row_shape: tuple[int, ...]) -> None:
    """Write one song's spectrogram at byte `offset` of a chunk file _start_chunk made."""
    if row.shape != row_shape or row.dtype != np.float32:
        raise MusictagError(f"{path.name}: a spectrogram of shape {row.shape} ({row.dtype}) where the front end "
                            f"gives {row_shape} (float32)")
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(descriptor, np.ascontiguousarray(row).data, offset)
    finally:
        os.close(descriptor)


def _compute_row(audio_path: str, offset: int, front_end: dict, chunk_path: Path | None,
                 row_shape: tuple[int, ...]) -> np.ndarray | None:
    """One song's spectrogram, written at `offset` of `chunk_path` when given, else returned."""
    row = spectrogram_of(audio_path, **front_end)
    if chunk_path is None:
        return row
    _write_row(chunk_path, offset, row, row_shape)
    return None


def extract(ids: list[str], audio_paths: list[str], out_dir: Path, front_end: dict, chunk_size: int = 256,
            executor: str = "processes", workers: int = 0, scheduler_address: str | None = None) -> dict:
    """Compute `spectrogram_of(path, **front_end)` for every song and write the store to `out_dir`.

    Returns a summary (songs, chunks, songs/s, resumed chunks). The parent holds no spectrogram with
    local workers, and two chunks' worth with Dask's.
    """
    if executor not in EXECUTORS:
        raise MusictagError(f"spectrograms.executor: unknown executor '{executor}'; known: {', '.join(EXECUTORS)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise MusictagError(f"spectrograms.chunk_size: need an integer >= 1, got {chunk_size!r}")
    if len(ids) != len(audio_paths) or not ids:
        raise MusictagError("spectrograms: no songs to extract (is the clean manifest empty?)")
    scratch_dir = out_dir.with_name(out_dir.name + ".partial")
    scratch_dir.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(ids), chunk_size)
    names = [_chunk_name(i, ids[s:s + chunk_size], audio_paths[s:s + chunk_size], front_end)
             for i, s in enumerate(starts)]
    for stale in scratch_dir.iterdir():  # work for other params or songs, or half-written files
        if stale.name not in names:
            stale.unlink()
    pending = [(name, s) for name, s in zip(names, starts) if not (scratch_dir / name).exists()]
    resumed_songs = len(ids) - sum(min(chunk_size, len(ids) - s) for _, s in pending)
    if resumed_songs:
        print(f"resuming: {len(names) - len(pending)} of {len(names)} chunks ({resumed_songs} songs) already done")

    started = time.perf_counter()
    make_executor, workers_write = EXECUTORS[executor]
    if executor == "processes" and pending:
        warm_up(**front_end)  # once here rather than in every (forked) worker
    row_shape = spectrogram_shape(**front_end)

    def submit(pool: Executor, name: str, start: int) -> tuple[Path, list[int], Iterator]:
        """Start chunk `name` in a temporary file and queue its songs."""
        chunk_paths = audio_paths[start:start + chunk_size]
        tmp = scratch_dir / (name + ".tmp")
        offsets = _start_chunk(tmp, len(chunk_paths), row_shape)
        compute = partial(_compute_row, front_end=front_end, chunk_path=tmp if workers_write else None,
                          row_shape=row_shape)
        return tmp, offsets, pool.map(compute, chunk_paths, offsets)

    try:
        with make_executor(workers, scheduler_address) as pool, \
                tqdm(total=len(ids), initial=resumed_songs, unit="song", desc="log-mel") as progress:
            submitted = (submit(pool, name, start) for name, start in pending)
            following = next(submitted, None)
            for name, _ in pending:
                # queue the next chunk's songs before waiting for this one's, so that the workers
                # never wait for the parent
                (tmp, offsets, results), following = following, next(submitted, None)
                for row, offset in zip(results, offsets, strict=True):
                    if row is not None:
                        _write_row(tmp, offset, row, row_shape)
                    progress.update()
                os.replace(tmp, scratch_dir / name)
    finally:  # once the workers are done: a failed run leaves finished chunks only
        for unfinished in scratch_dir.glob("*.tmp"):
            unfinished.unlink()
    elapsed_s = time.perf_counter() - started
    computed = len(ids) - resumed_songs
    rate = computed / elapsed_s if elapsed_s > 0 else float("nan")
    print(f"extracted {computed} songs in {elapsed_s:.1f} s ({rate:.1f} songs/s)")

    index = {
        "shape": list(row_shape),
        "dtype": "float32",
        "front_end": front_end,
        "chunks": [{"file": name, "ids": ids[s:s + chunk_size]} for name, s in zip(names, starts)],
    }
    (scratch_dir / INDEX_NAME).write_text(json.dumps(index) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(scratch_dir, out_dir)
    return {"songs": len(ids), "chunks": len(names), "resumed_songs": resumed_songs, "songs_per_s": round(rate, 2)}


def read_index(store_dir: Path) -> dict:
    try:
        return json.loads((store_dir / INDEX_NAME).read_text())
    except FileNotFoundError:
        raise MusictagError(f"{store_dir / INDEX_NAME}: spectrogram index not found (run `dvc repro spectrograms`)") from None


def iter_spectrograms(store_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(id, log-mel of shape (n_mels, n_frames)) for every song, streamed from memory-mapped chunks."""
    for chunk in read_index(store_dir)["chunks"]:
        array = np.load(store_dir / chunk["file"], mmap_mode="r")
        for song_id, row in zip(chunk["ids"], array):
            yield song_id, row
