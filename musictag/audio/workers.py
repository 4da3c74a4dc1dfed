"""Worker processes that one bad file cannot stall or sink: each call is bounded in time and memory.

A decoder that hangs inside C code cannot be interrupted from Python, so every call runs in a
pebble worker process that is killed when the call outlives `timeout_s` (and replaced). Each worker's
address space is capped at what it held when it started plus `memory_limit_mb`, so a header that
claims a billion channels ends in a MemoryError, not in the kernel's OOM killer. A worker that dies
(a decoder's segfault) costs its one file. These outcomes become a `Failure` with a reason; any other
exception is a bug and is raised. Workers write nothing to the terminal: C decoders (libmpg123) print
their complaints to stderr, which in a worker goes to /dev/null; the reason says what happened.
"""
from __future__ import annotations

import collections
import contextlib
import faulthandler
import functools
import multiprocessing
import os
import resource
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from pebble import ProcessExpired, ProcessPool


Job = TypeVar("Job")

FAILURE_REASONS = {
    "timeout": "decoding took longer than the per-file time limit (timeout_s); the worker was killed",
    "out of memory": "decoding needed more than the per-file memory limit (memory_limit_mb)",
    "crashed": "the decoder killed its worker process (a segfault or abort in C code)",
}


@dataclass(frozen=True)
class Failure:
    """Why a call gave no result: a key of FAILURE_REASONS and a line of detail."""

    reason: str
    detail: str

    def message(self, path) -> str:
        """The one line a user reads: `path: reason (detail)`."""
        return f"{path}: {self.reason} ({self.detail})"


class BoundedPool:
    """`workers` processes (0 = all cores) running one call per job, each within the limits above.

    Forked workers start with what the parent imported and cached; `start_method="forkserver"`
    is for a parent that holds threads which must not be forked (TensorFlow's): workers then fork
    from a server process that imported the modules named in `preload`.
    """

    def __init__(self, workers: int, timeout_s: float, memory_limit_mb: float, start_method: str = "fork",
                 preload: Sequence[str] = ()):
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s, self.memory_limit_mb = timeout_s, memory_limit_mb
        context = multiprocessing.get_context(start_method)
        if preload:
            context.set_forkserver_preload(list(preload))
        if start_method == "forkserver":  # its workers' stderr is /dev/null from the start (see stderr_to_devnull)
            with stderr_to_devnull():
                from multiprocessing import forkserver

                forkserver.ensure_running()
        self._pool = ProcessPool(max_workers=self.workers, initializer=_start_worker, initargs=(memory_limit_mb,),
                                 context=context)

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self._pool.close()
        else:  # an interrupted run must not wait for the queued jobs
            self._pool.stop()
        self._pool.join()

    def imap(self, function: Callable[[Job], object], jobs: Iterable[Job]) -> Iterator[tuple[Job, object]]:
        """(job, function(job) or a Failure) for every job, in order. Jobs are drawn from `jobs` only as
        workers need them (a few per worker ahead), so a generator of 240,000 files stays a generator."""
        schedule = functools.partial(self._pool.schedule, function, timeout=self.timeout_s)
        for job, future in in_order(jobs, lambda job: schedule(args=(job,)), 4 * self.workers):
            yield self._outcome(job, future)

    def _outcome(self, job, future) -> tuple[object, object]:
        try:
            return job, future.result()
        except FutureTimeoutError:
            return job, Failure("timeout", f"no result after {self.timeout_s:g} s")
        except MemoryError:
            return job, Failure("out of memory", f"over {self.memory_limit_mb:g} MB")
        except ProcessExpired as err:
            return job, Failure("crashed", f"worker exit code {err.exitcode}")


def in_order(jobs: Iterable[Job], submit: Callable[[Job], object], lookahead: int) -> Iterator[tuple[Job, object]]:
    """(job, submit(job)) for every job, in order, drawing a job only while fewer than `lookahead`
    are in flight: the in-order, bounded read-ahead that BoundedPool and the Dask executor share."""
    in_flight = collections.deque()
    for job in jobs:
        in_flight.append((job, submit(job)))
        if len(in_flight) >= lookahead:
            yield in_flight.popleft()
    while in_flight:
        yield in_flight.popleft()


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 on /dev/null inside the block, for what C code or a child process started there writes
    before any Python setting applies: TensorFlow's start-up notices, or a fork server's worker that was still
    starting when its run ended, whose EOFError would follow the run's last line."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_worker(memory_limit_mb: float) -> None:
    """Cap this worker's address space and send its stderr to /dev/null (see the module docstring)."""
    with open("/proc/self/statm") as statm:  # first field: the address space now, in pages
        in_use_bytes = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = in_use_bytes + int(memory_limit_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    faulthandler.disable()  # a parent's (pytest's) would dump a crashing decoder's stack to its own stderr
