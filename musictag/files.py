"""File I/O in one place: atomic writes and folder replacement (an interruption never leaves a half-written
output), and reads whose faults become one line naming the file."""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from musictag.errors import MusictagError


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`. The temporary name
    keeps the suffix, so writers that choose a format by it (np.savez, savefig, soundfile) still do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # same directory: the rename is atomic
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    """Indented JSON, strict: a NaN or infinity is an error (not JSON, and DVC cannot compare it)."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, frame) -> None:
    """A pandas DataFrame as CSV without its index."""
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`. rename(2) cannot replace a non-empty directory, so the old one steps
    aside, comes back if the move fails, and is deleted only once `new` is in place."""
    new, target = Path(new), Path(target)
    previous = target.with_name(target.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        os.replace(target, previous)
    try:
        os.replace(new, target)
    except OSError:
        if previous.exists():
            os.replace(previous, target)
        raise
    shutil.rmtree(previous, ignore_errors=True)


# Reading: every parse or I/O fault of an input file becomes one MusictagError line naming it.
READ_ERRORS = (OSError, ValueError, EOFError, csv.Error, pickle.UnpicklingError, KeyError, IndexError)


def first_line(err: BaseException) -> str:
    """A library's error text cut to its first line, so our message stays a single line."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else err.__class__.__name__


def read_json(path: Path, what: str, hint: str):
    """The JSON in `path` (a `what`); missing, it is one line saying how to make it (`hint`), unreadable,
    one line saying why."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MusictagError(f"{path}: {what} not found ({hint})") from None
    except (OSError, ValueError) as err:
        raise MusictagError(f"{path}: cannot read {what} ({first_line(err)})") from None


@contextmanager
def reading(path) -> Iterator[None]:
    """Turn a missing or unparsable `path` into one MusictagError line naming it, never a traceback."""
    try:
        yield
    except FileNotFoundError:
        raise MusictagError(f"{path}: file not found") from None
    except READ_ERRORS as err:
        raise MusictagError(f"{path}: cannot read ({first_line(err)})") from None
