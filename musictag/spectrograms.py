"""Log-mel extraction for a whole catalogue: parallel, resumable, stored in a few large files.

The store is a directory of `chunk-NNNNN.npy` float32 arrays of shape (n_songs, n_mels, n_frames)
plus `index.json` naming the ids of each chunk. Few large files keep DVC's hashing cheap (MSD is
240k songs); chunks are finished in a scratch directory beside the output that DVC does not delete,
so a rerun after an interruption skips every chunk already written. Work runs on local processes
or, for catalogues that outgrow one machine, on a Dask distributed cluster: both through the
concurrent.futures `Executor.map` interface, so the two give identical arrays.
"""
from __future__ import annotations

import hashlib
import json
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

from musictag.audio import spectrogram_of, warm_up
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


EXECUTORS = {"processes": local_executor, "dask": dask_executor}


def _chunk_name(index: int, ids: list[str], paths: list[str], front_end: dict) -> str:
    """A chunk's file name carries a digest of what it holds, so stale scratch work is never reused.
    Paths inside the repository enter it relative to the root: the store of a clone elsewhere, or of
    another machine, has the same names and so the same DVC hash."""
    portable = [str(Path(path).relative_to(REPO_ROOT)) if Path(path).is_relative_to(REPO_ROOT) else str(path)
                for path in paths]
    digest = hashlib.sha256(json.dumps([ids, portable, front_end], sort_keys=True).encode()).hexdigest()[:12]
    return f"chunk-{index:05d}-{digest}.npy"


def _save_atomically(path: Path, rows: list[np.ndarray]) -> None:
    """np.save(path, np.stack(rows)), through a temporary file and without the stacked copy."""
    shape, dtype = rows[0].shape, rows[0].dtype
    if any(row.shape != shape or row.dtype != dtype for row in rows):
        raise MusictagError(f"{path.name}: spectrograms of different shapes or dtypes in one chunk")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (len(rows), *shape)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for row in rows:
            handle.write(np.ascontiguousarray(row).data)
    os.replace(tmp, path)


def extract(ids: list[str], audio_paths: list[str], out_dir: Path, front_end: dict, chunk_size: int = 256,
            executor: str = "processes", workers: int = 0, scheduler_address: str | None = None) -> dict:
    """Compute `spectrogram_of(path, **front_end)` for every song and write the store to `out_dir`.

    Returns a summary (songs, chunks, songs/s, resumed chunks). Memory holds two chunks at a time.
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
    if executor == "processes" and pending:
        warm_up(**front_end)  # once here rather than in every (forked) worker
    compute = partial(spectrogram_of, **front_end)
    shape = None
    with EXECUTORS[executor](workers, scheduler_address) as pool, \
            tqdm(total=len(ids), initial=resumed_songs, unit="song", desc="log-mel") as progress:
        submitted = (pool.map(compute, audio_paths[start:start + chunk_size]) for _, start in pending)
        following = next(submitted, None)
        for name, _ in pending:
            # queue the next chunk's songs before collecting and writing this one's, so that the
            # workers never wait for the parent
            results, following = following, next(submitted, None)
            rows = []
            for spectrogram in results:
                rows.append(spectrogram)
                progress.update()
            shape = rows[0].shape
            _save_atomically(scratch_dir / name, rows)
    elapsed_s = time.perf_counter() - started
    computed = len(ids) - resumed_songs
    rate = computed / elapsed_s if elapsed_s > 0 else float("nan")
    print(f"extracted {computed} songs in {elapsed_s:.1f} s ({rate:.1f} songs/s)")

    if shape is None:
        shape = np.load(scratch_dir / names[0], mmap_mode="r").shape[1:]
    index = {
        "shape": list(shape),
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
