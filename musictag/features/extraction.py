"""Log-mel extraction for a whole catalogue: parallel, resumable, into the spectrogram store (musictag.features.spectrogram_store).

Chunks are finished in a scratch directory beside the output that DVC does not delete,
so a rerun after an interruption skips every chunk already written. Work runs on local processes
or, for catalogues that outgrow one machine, on a Dask distributed cluster: both through one
in-order `imap(function, jobs)`, so the two give identical arrays. Local workers write their rows
straight into the chunk file (receiving half a megabyte a song in the parent cost ~14% of the
songs/s on 2 cores) and are bounded in time and memory per song (musictag.audio.workers); Dask workers, which
may not see this file system, send them back. A song that fails is listed in the index, not fatal.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from musictag.audio.decoding import spectrogram_of
from musictag.audio.frontend import spectrogram_shape, warm_up
from musictag.audio.workers import BoundedPool, Failure, in_order
from musictag.errors import MusictagError
from musictag.features.spectrogram_store import INDEX_NAME, start_chunk, write_index, write_row
from musictag.files import first_line, replace_dir, write_atomic

FAILED_SUFFIX = ".failed.json"  # beside each finished scratch chunk: the songs that failed in it


@contextmanager
def local_executor(workers: int, timeout_s: float, memory_limit_mb: float, scheduler_address: str | None = None
                   ) -> Iterator[BoundedPool]:
    """`workers` processes on this machine (0 = all cores), forked: they start with what the parent
    imported and cached (see warm_up). Each song is bounded by `timeout_s` and `memory_limit_mb`."""
    with BoundedPool(workers, timeout_s, memory_limit_mb) as pool:
        yield pool


class _DaskPool:
    """BoundedPool's `imap` on a Dask distributed cluster. The per-song limits are the cluster's own
    (`dask worker --memory-limit`; Dask has no per-task time limit), so they are not repeated here."""

    def __init__(self, client):
        self.client = client

    def imap(self, function: Callable, jobs: Iterable) -> Iterator[tuple[object, object]]:
        """(job, function(job)) in order, a few jobs per worker thread in flight."""
        lookahead = 4 * max(1, sum(self.client.nthreads().values()))
        for job, future in in_order(jobs, lambda job: self.client.submit(function, job, pure=False), lookahead):
            yield job, future.result()


@contextmanager
def dask_executor(workers: int, timeout_s: float, memory_limit_mb: float, scheduler_address: str | None
                  ) -> Iterator[_DaskPool]:
    """The workers of a running Dask distributed cluster (`dask scheduler` + `dask worker ADDRESS`)."""
    from distributed import Client

    try:
        client = Client(scheduler_address, timeout="10s")
    except OSError as err:
        raise MusictagError(f"spectrograms.scheduler_address: cannot reach {scheduler_address} ({err})") from None
    with client:
        yield _DaskPool(client)


# name: (executor, whether its workers share this machine's files and so write their own rows)
EXECUTORS = {"processes": (local_executor, True), "dask": (dask_executor, False)}


@dataclass(frozen=True)
class _Row:
    """One song's job: its spectrogram goes to byte `offset` of chunk `chunk`, written by the worker
    into `tmp` when given, else sent back. `last`: the chunk is complete once this row is."""

    chunk: str
    tmp: Path | None
    offset: int
    song_id: str
    audio_path: str  # as the manifest lists it
    last: bool


def _chunk_name(index: int, ids: list[str], paths: list[str], front_end: dict) -> str:
    """A chunk's file name carries a digest of what it holds, so stale scratch work is never reused.
    Paths enter it as the manifest lists them (relative to `audio_root`): the store of a clone elsewhere,
    or of another machine, has the same names and so the same DVC hash."""
    digest = hashlib.sha256(json.dumps([ids, paths, front_end], sort_keys=True).encode()).hexdigest()[:12]
    return f"chunk-{index:05d}-{digest}.npy"


def _compute_row(row: _Row, audio_root: str, front_end: dict,
                 row_shape: tuple[int, ...]) -> np.ndarray | Failure | None:
    """One song's spectrogram (its audio_path taken from `audio_root`), written into the chunk when `row.tmp`
    is given, else returned; a song no decoder can read is a Failure (clean kept it, so its damage lies past
    what clean decodes)."""
    try:
        spectrogram = spectrogram_of(os.path.join(audio_root, row.audio_path), **front_end)
    except MusictagError as err:
        return Failure("undecodable", first_line(err))
    if row.tmp is None:
        return spectrogram
    write_row(row.tmp, row.offset, spectrogram, row_shape)
    return None


def extract(ids: list[str], audio_paths: list[str], out_dir: Path, front_end: dict, chunk_size: int, executor: str,
            workers: int, scheduler_address: str, timeout_s: float, memory_limit_mb: float,
            audio_root: str | Path = "") -> dict:
    """Compute `spectrogram_of(path, **front_end)` for every song and write the store to `out_dir`.

    `audio_paths` are the manifest's; a relative one is taken from `audio_root` (give it absolute where
    workers may run in another folder or on another machine that mounts the same files), by default
    from the current directory.

    A song that fails (undecodable, or over `timeout_s` or `memory_limit_mb` on local workers) keeps
    a zero row whose id is null in the index, and is listed under the index's "failed"; the run goes
    on. Returns a summary (songs, failed, chunks, songs/s, resumed songs). The parent holds no
    spectrogram with local workers, and a few per worker with Dask's.
    """
    if len(ids) != len(audio_paths) or not ids:
        raise MusictagError("spectrograms: no songs to extract (is the clean manifest empty?)")
    scratch_dir = out_dir.with_name(out_dir.name + ".partial")
    scratch_dir.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(ids), chunk_size)
    names = [_chunk_name(i, ids[s:s + chunk_size], audio_paths[s:s + chunk_size], front_end)
             for i, s in enumerate(starts)]
    keep = set(names) | {name + FAILED_SUFFIX for name in names}
    for stale in scratch_dir.iterdir():  # work for other params or songs, or half-written files
        if stale.name not in keep:
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

    def rows() -> Iterator[_Row]:
        """Every pending song, each chunk started in a temporary file as its first song is drawn."""
        for name, start in pending:
            tmp = scratch_dir / (name + ".tmp")
            chunk_ids, chunk_paths = ids[start:start + chunk_size], audio_paths[start:start + chunk_size]
            offsets = start_chunk(tmp, len(chunk_paths), row_shape)
            for i, (song_id, path, offset) in enumerate(zip(chunk_ids, chunk_paths, offsets)):
                yield _Row(name, tmp if workers_write else None, offset, song_id, path, i == len(offsets) - 1)

    compute = partial(_compute_row, audio_root=str(audio_root), front_end=front_end, row_shape=row_shape)
    failed = []  # this run's failures of the chunk being finished
    try:
        with make_executor(workers, timeout_s, memory_limit_mb, scheduler_address) as pool, \
                tqdm(total=len(ids), initial=resumed_songs, unit="song", desc="log-mel") as progress:
            for row, outcome in pool.imap(compute, rows()):
                if isinstance(outcome, Failure):
                    failed.append({"id": row.song_id, "audio_path": row.audio_path,
                                   "reason": outcome.reason, "detail": outcome.detail})
                    progress.write(outcome.message(row.audio_path) + "; skipped")
                elif outcome is not None:
                    write_row(scratch_dir / (row.chunk + ".tmp"), row.offset, outcome, row_shape)
                progress.update()
                if row.last:  # the failures first: a chunk file present means its list is too
                    write_atomic(scratch_dir / (row.chunk + FAILED_SUFFIX),
                                 partial(Path.write_text, data=json.dumps(failed) + "\n"))
                    os.replace(scratch_dir / (row.chunk + ".tmp"), scratch_dir / row.chunk)
                    failed = []
    finally:  # once the workers are done: a failed run leaves finished chunks only
        for unfinished in scratch_dir.glob("*.tmp"):
            unfinished.unlink()
    elapsed_s = time.perf_counter() - started
    computed = len(ids) - resumed_songs
    rate = computed / elapsed_s if elapsed_s > 0 else float("nan")
    print(f"extracted {computed} songs in {elapsed_s:.1f} s ({rate:.1f} songs/s)")

    chunks, failed = [], []
    for name, start in zip(names, starts):
        failed_path = scratch_dir / (name + FAILED_SUFFIX)
        chunk_failed = json.loads(failed_path.read_text())
        failed_path.unlink()
        failed_ids = {entry["id"] for entry in chunk_failed}
        chunks.append({"file": name, "ids": [None if id_ in failed_ids else id_ for id_ in ids[start:start + chunk_size]]})
        failed.extend(chunk_failed)
    if failed:
        print(f"{len(failed)} of {len(ids)} songs failed and are left out of the store (see {INDEX_NAME}: 'failed')")
    write_index(scratch_dir, row_shape, front_end, chunks, failed)
    replace_dir(scratch_dir, out_dir)
    return {"songs": len(ids), "failed": len(failed), "chunks": len(names), "resumed_songs": resumed_songs,
            "songs_per_s": round(rate, 2)}
