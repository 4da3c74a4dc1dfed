"""Tagging audio files with a trained model (musictag.inference.tagger): one file, or a whole library.

Two levels, as in musicnn: `top_tags(path, model)` is the one call a user makes, and `tag_file` gives
one file's probabilities (n_tags,), decoded in this process. `tag_files` tags every audio file under some
folders, one bad file costing itself: files are checked and decoded in bounded workers
(musictag.audio.workers) while the parent runs the model, so decoding and inference overlap; each file is
decoded once (the check keeps its audio), and windows of several files are predicted in one batch. Each
file is either its whole length cut into consecutive 29.12 s windows whose predictions are averaged
(`windows="all"`, as `tag_file` does), or the middle window only (`"middle"`, the pipeline's own front
end: what the model was trained on). Results stream out in input order. A file is usable by the clean
stage's rules with the given `min_duration_s` and `silence_dbfs` (params.yaml's clean section in the
pipeline).
"""
from __future__ import annotations

import csv
import functools
import json
import os
import sys
import tempfile
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from musictag.audio.workers import BoundedPool, Failure, stderr_to_devnull
from musictag.errors import MusictagError
from musictag.inference.tagger import Tagger

OUTPUT_FORMATS = (".jsonl", ".csv")
_MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # None: the system's temporary folder
_BATCH_WINDOWS = 32  # windows predicted at once, across files


@dataclass(frozen=True)
class TaggedFile:
    """A file's tags: mean probabilities (n_tags,), mean penultimate embedding (d,), and each
    window's probabilities (n_windows, n_tags), window i starting at i * window_s seconds; with tag_files'
    `references`, each one's mean penultimate embedding by its name."""

    path: str
    probabilities: np.ndarray
    embedding: np.ndarray
    window_probabilities: np.ndarray
    window_s: float
    reference_embeddings: dict[str, np.ndarray] = field(default_factory=dict)


def find_audio(paths: Iterable[str | Path]) -> list[str]:
    """The files named, and every audio file (by extension) under the folders named, recursively,
    sorted; a path that does not exist stays in the list, for its reason to be reported."""
    from musictag.audio.decoding import AUDIO_EXTENSIONS

    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        else:
            found.append(str(path))
    return found


def top_tags(path: str | Path, model: str | Path, k: int = 5, *, min_duration_s: float,
             silence_dbfs: float) -> list[tuple[str, float]]:
    """The one-call API: the `k` most likely tags of an audio file, with their probabilities, from `model`: a
    folder that training wrote (the pipeline's: `data/model`) or a published tagger's name (`msd-crnn`);
    the file checks as in `tag_file`."""
    tagger = Tagger(model)
    probabilities = tag_file(tagger, path, min_duration_s=min_duration_s, silence_dbfs=silence_dbfs)
    order = np.argsort(probabilities)[::-1][:k]
    return [(tagger.tag_names[i], float(probabilities[i])) for i in order]


def tag_file(tagger: Tagger, path: str | Path, *, min_duration_s: float, silence_dbfs: float) -> np.ndarray:
    """Tag probabilities (n_tags,) of one audio file of any length, by `tagger`.

    A file longer than one input window is cut into consecutive windows of `duration_s` (the last one
    zero-padded) and their predictions are averaged. The file must be usable by the clean stage's rules
    with these settings (params.yaml's clean section in the pipeline): one that is shorter than
    `min_duration_s`, or quieter than `silence_dbfs` throughout, is a one-line MusictagError. Decoded as
    the pipeline decodes, in this process (`musictag tag` bounds each file's time and memory).
    """
    spectrograms = window_spectrograms(str(path), tagger.config["front_end"], "all", min_duration_s, silence_dbfs)
    if isinstance(spectrograms, Failure):
        raise MusictagError(spectrograms.message(path))
    probabilities, _ = tagger.predict_batches([spectrograms[..., np.newaxis]])
    return probabilities.mean(axis=0)


def tag_files(tagger, paths: list[str], windows: str, timeout_s: float, memory_limit_mb: float, min_duration_s: float,
              silence_dbfs: float, workers: int = 0, references: Iterable[str] = ()) -> Iterator[tuple[str, TaggedFile | Failure]]:
    """(path, TaggedFile or Failure) for every path, in order, with a progress bar (files/s, ETA)
    on a terminal. A Failure's reason is a key of musictag.audio.checks.REJECT_REASONS: files are judged by the
    clean stage's `min_duration_s` and `silence_dbfs`, each decoded within `timeout_s` and
    `memory_limit_mb` by one of `workers` processes (0 = all cores).

    `references` names published taggers (musictag.pretrained) whose mean penultimate embedding each TaggedFile
    also carries (reference_embeddings, the blocks recommend.features joins): those of `tagger`'s front end
    embed the same decoded windows, one decode for all; any other decodes the tagged files again (then the
    results come once all are tagged, and a file it cannot tag is a Failure)."""
    from musictag.inference.tagger import Tagger

    names = list(dict.fromkeys(references))
    others = {name: Tagger(name) for name in names if name != tagger.pretrained}
    front_end = tagger.config["front_end"]
    alongside = [other for other in others.values() if other.config["front_end"] == front_end]
    options = {"windows": windows, "timeout_s": timeout_s, "memory_limit_mb": memory_limit_mb,
               "min_duration_s": min_duration_s, "silence_dbfs": silence_dbfs, "workers": workers}
    results = _tag_files_once(tagger, alongside, paths, **options)
    if tagger.pretrained in names:  # a published `tagger` is one of the references itself
        results = ((path, _with(outcome, tagger.pretrained, outcome.embedding)) for path, outcome in results)
    apart = [other for other in others.values() if other not in alongside]
    if not apart:
        yield from results
        return
    results = dict(results)
    for other in apart:
        tagged = [path for path, outcome in results.items() if isinstance(outcome, TaggedFile)]
        for path, outcome in _tag_files_once(other, [], tagged, **options):
            results[path] = outcome if isinstance(outcome, Failure) else _with(results[path], other.pretrained,
                                                                              outcome.embedding)
    yield from ((path, results[path]) for path in dict.fromkeys(paths))


def _with(tagged, name: str, embedding: np.ndarray):
    """`tagged` (a TaggedFile, or a Failure passed through) with `name`'s embedding added."""
    if isinstance(tagged, Failure):
        return tagged
    return dataclasses.replace(tagged, reference_embeddings={**tagged.reference_embeddings, name: embedding})


def _tag_files_once(tagger, references: list, paths: list[str], windows: str, timeout_s: float,
                    memory_limit_mb: float, min_duration_s: float, silence_dbfs: float,
                    workers: int) -> Iterator[tuple[str, TaggedFile | Failure]]:
    """tag_files with `references`, Taggers of `tagger`'s front end, embedding the same decoded windows."""
    front_end = tagger.config["front_end"]
    pending: list[tuple[str, np.ndarray]] = []  # decoded, waiting for a batch
    # forkserver: the parent holds TensorFlow's threads, which a forked worker must not inherit. The
    # server imports once what each worker would import for its first file: librosa.filters (the mel
    # filterbank's, which loads numba) alone took ~0.8 s of every worker's first spectrogram.
    with tempfile.TemporaryDirectory(prefix="musictag-tag-", dir=_MEMORY_DIR) as hand_over_dir, \
            BoundedPool(workers, timeout_s, memory_limit_mb, start_method="forkserver",
                        preload=["musictag.audio.checks", "librosa.filters"]) as pool, \
            tqdm(total=len(paths), unit="file", desc="tag", disable=None, file=sys.stderr) as progress:
        decode = functools.partial(_spectrograms_to_file, hand_over_dir=hand_over_dir, front_end=front_end,
                                   windows=windows, min_duration_s=min_duration_s, silence_dbfs=silence_dbfs)
        for path, outcome in pool.imap(decode, paths):
            if isinstance(outcome, Failure):
                yield from _predict(tagger, references, pending, front_end["duration_s"])
                pending = []
                yield path, outcome
            else:
                pending.append((path, _take(outcome)))
                if sum(len(spectrograms) for _, spectrograms in pending) >= _BATCH_WINDOWS:
                    yield from _predict(tagger, references, pending, front_end["duration_s"])
                    pending = []
            progress.update()
        yield from _predict(tagger, references, pending, front_end["duration_s"])


def _predict(tagger, references, pending: list[tuple[str, np.ndarray]], window_s: float) -> Iterator[tuple[str, TaggedFile]]:
    """One forward pass of each model over the pending files' windows, split back per file."""
    if not pending:
        return
    _import_keras_quietly()
    batch = np.concatenate([spectrograms for _, spectrograms in pending])[..., np.newaxis]
    probabilities, embeddings = tagger.predict_batches([batch])
    theirs = {reference.pretrained: reference.predict_batches([batch])[1] for reference in references}
    start = 0
    for path, spectrograms in pending:
        rows = slice(start, start + len(spectrograms))
        start = rows.stop
        yield path, TaggedFile(path, probabilities[rows].mean(axis=0), embeddings[rows].mean(axis=0),
                               probabilities[rows], window_s,
                               {name: vectors[rows].mean(axis=0) for name, vectors in theirs.items()})


def _spectrograms_to_file(path: str, hand_over_dir: str, **options) -> str | Failure:
    """In a worker: window_spectrograms, handed over as the name of a .npy file in `hand_over_dir`
    (in memory where /dev/shm exists). A 6 MB result through the pool's pipe cost ~22 ms of CPU
    between the two processes, a file ~7; a worker killed mid-write leaves a file the directory's
    removal takes with it."""
    spectrograms = window_spectrograms(path, **options)
    if isinstance(spectrograms, Failure):
        return spectrograms
    descriptor, name = tempfile.mkstemp(suffix=".npy", dir=hand_over_dir)
    with os.fdopen(descriptor, "wb") as file:
        np.save(file, spectrograms)
    return name


def _take(name: str) -> np.ndarray:
    """The array _spectrograms_to_file handed over; its file is removed."""
    spectrograms = np.load(name)
    os.unlink(name)
    return spectrograms


def window_spectrograms(path: str, front_end: dict, windows: str, min_duration_s: float,
                        silence_dbfs: float) -> np.ndarray | Failure:
    """In a worker (or the caller's process): the file's window spectrograms, float32 (n_windows,
    n_mels, n_frames), or a Failure saying why it cannot be tagged. The middle window alone is decoded
    alone (check_window); all windows decode the whole file once, for the check and the windows
    (check_audio keeps it, resampled as it decodes)."""
    from musictag.audio.checks import REJECT_REASONS, check_audio, check_window
    from musictag.audio.frontend import song_spectrograms
    from musictag.files import first_line

    if windows == "middle":
        verdict, spectrogram = check_window(path, min_duration_s, silence_dbfs, **front_end)
        if verdict.ok:
            return spectrogram[np.newaxis]
    else:
        verdict = check_audio(path, min_duration_s, silence_dbfs, keep_at_hz=front_end["sample_rate_hz"])
        if verdict.ok:
            try:
                return song_spectrograms(verdict.audio, **front_end)
            except MusictagError as err:
                return Failure("undecodable", first_line(err))
    return Failure(verdict.reason, verdict.detail or REJECT_REASONS[verdict.reason])


@functools.cache
def _import_keras_quietly() -> None:
    """Import Keras (and so TensorFlow) once, with file descriptor 2 closed: TensorFlow's C++ start-up
    notices ("oneDNN custom operations are on", ...) are written there before any log level applies,
    and would mix with the one line per bad file. An import error still raises, with stderr restored."""
    with stderr_to_devnull():
        import keras  # noqa: F401


class ResultWriter:
    """Tagged files written as they come to `path` (.jsonl: one object a file; .csv: one row a file,
    or a window), each naming the model that tagged it, under a temporary name until the run ends, so a stopped run leaves no half file."""

    def __init__(self, path: str | Path, tag_names: list[str], k: int, per_window: bool, model_name: str):
        self.path = Path(path)
        if self.path.suffix.lower() not in OUTPUT_FORMATS:
            raise MusictagError(f"--output {path}: expected a {' or '.join(OUTPUT_FORMATS)} file")
        self.tag_names, self.k, self.per_window, self.model_name = tag_names, k, per_window, model_name
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> ResultWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "w", newline="")
        if self.path.suffix.lower() == ".csv":
            self._csv = csv.writer(self._file)
            self._csv.writerow(["path", "model", *(["window_start_s"] if self.per_window else []), "top_tags",
                                *self.tag_names])
        return self

    def write(self, tagged: TaggedFile) -> None:
        rows = [(None, tagged.probabilities)]
        if self.per_window:
            rows = [(round(i * tagged.window_s, 2), p) for i, p in enumerate(tagged.window_probabilities)]
        if self.path.suffix.lower() == ".csv":
            for start_s, probabilities in rows:
                self._csv.writerow([tagged.path, self.model_name, *([start_s] if self.per_window else []),
                                    "|".join(tag for tag, _ in self.top(probabilities)),
                                    *(f"{p:.4f}" for p in probabilities)])
            return
        record = {"path": tagged.path, "model": self.model_name, "top_tags": self.top(tagged.probabilities),
                  "probabilities": {t: round(float(p), 4) for t, p in zip(self.tag_names, tagged.probabilities)}}
        if self.per_window:
            record["windows"] = [{"start_s": start_s, "top_tags": self.top(p)} for start_s, p in rows]
        self._file.write(json.dumps(record) + "\n")

    def top(self, probabilities: np.ndarray) -> list[list]:
        """The k most likely tags, as [tag, probability] pairs."""
        return [[self.tag_names[i], round(float(probabilities[i]), 4)] for i in probabilities.argsort()[::-1][:self.k]]

    def __exit__(self, exc_type, *_) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
