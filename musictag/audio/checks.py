"""Whether an audio file can be used, and if not, why, in a fixed vocabulary (`REJECT_REASONS`).

`check_audio` tells the clean stage: it decodes the whole file once (musictag.audio.decoding) and
judges what it heard by the one rule set, `_verdict`; `check_many` runs it over a catalogue with every
file bounded in time and memory (musictag.audio.workers), so one hostile file costs itself only.
`check_window` judges by the same rules from the middle window alone, for tagging a long track.
"""
from __future__ import annotations

import functools
import math
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from musictag.errors import MusictagError
from musictag.files import first_line
from musictag.audio.decoding import (CONTAINER_OF_EXTENSION, NON_FINITE, SAMPLE_RATE_RANGE_HZ, DecodedFile,
                                     ImplausibleRate, Undecodable, decode_file, middle_window, open_source,
                                     resampled_length, sample_rate_problem)
from musictag.audio.containers import container_of, length_is_guessed, wav_missing_bytes
from musictag.audio.frontend import finite_log_mel
from musictag.audio.workers import FAILURE_REASONS, BoundedPool, Failure

# Float samples beyond this (+60 dBFS) are damage, not overs (a master's overs reach a few dB), and the
# squared mel power of samples near 2.6e6 overflows float32, so the spectrogram would not be finite.
MAX_SAMPLE_MAGNITUDE = 1000.0

REJECT_REASONS = {  # in the order check_audio tests them
    "missing": "the path does not exist",
    "not a file": "the path is a directory or another non-regular file",
    "unreadable": "the file cannot be opened (permissions or an I/O error)",
    "empty": "the file has 0 bytes",
    "zeroed": "every byte of the file is zero",
    "wrong header": "past the tags and junk decoders skip, the bytes are another format than the extension's, or none",
    "undecodable": "no decoder can read the audio",
    "implausible sample rate": f"the header's sample rate lies outside {SAMPLE_RATE_RANGE_HZ[0]:,}-"
                               f"{SAMPLE_RATE_RANGE_HZ[1]:,} Hz, the rates recordings have",
    "truncated": "the header promises more audio than the file holds",
    "nan or inf samples": "a float file holds NaN or infinite samples",
    "out-of-range samples": f"a float file holds samples beyond +-{MAX_SAMPLE_MAGNITUDE:g} (full scale is +-1)",
    "too short": "the audio is shorter than min_duration_s",
    "silent": "the RMS level is below silence_dbfs",
    **FAILURE_REASONS,  # check_many's workers: timeout, out of memory, crashed
}

# A decoder may fall this far short of the frame count in the header before the file counts as
# truncated: without a Xing tag an MP3's length is an estimate (mpg123 itself warns past 1%).
DECLARED_LENGTH_TOLERANCE = 0.01
_IN_WINDOW = "in the middle window"  # what check_window hears, in its details


@dataclass(frozen=True)
class AudioCheck:
    """check_audio's verdict: `reason` is None for a usable file, else a key of REJECT_REASONS.
    The stream's properties stay 0 when the file was rejected before it could be decoded."""

    reason: str | None
    detail: str = ""
    duration_s: float = 0.0
    sample_rate_hz: int = 0
    channels: int = 0
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)  # mono, if asked to keep it

    @property
    def ok(self) -> bool:
        return self.reason is None


def check_audio(path: str | Path, min_duration_s: float, silence_dbfs: float,
                keep_at_hz: int | None = None) -> AudioCheck:
    """Decode all of `path` once and say whether it is usable; with `keep_at_hz`, a usable file's
    audio comes with the verdict: float32 (n,), what librosa.load(path, sr=keep_at_hz) gives, bit for
    bit. Each decoded block is downmixed and resampled as it comes (soxr's stream gives the same
    samples as its one-shot call), so the whole file is never kept at its own rate: a 5-minute track
    at 44.1 kHz keeps 16 MB, not 59. Never raises for a bad file, but for a MemoryError, which
    check_many's bounded workers turn into "out of memory"."""
    try:
        return _check(Path(path), min_duration_s, silence_dbfs, keep_at_hz)
    except MemoryError:
        raise
    except Exception as err:  # a decoder's unforeseen failure must not stop a scan of 100,000 files
        return AudioCheck("undecodable", f"{type(err).__name__}: {first_line(err)}")


def check_many(paths: Sequence[str | Path], workers: int, timeout_s: float, memory_limit_mb: float,
               **check_options) -> list[AudioCheck]:
    """check_audio on every path, in input order, across `workers` processes (0 = all cores), each
    file within `timeout_s` and `memory_limit_mb` (else rejected as "timeout" or "out of memory")."""
    check = functools.partial(check_audio, **check_options)
    workers = min(workers or os.cpu_count() or 1, max(1, len(paths)))
    checks = []
    with BoundedPool(workers, timeout_s, memory_limit_mb) as pool:
        for _, outcome in tqdm(pool.imap(check, paths), total=len(paths), unit="file", desc="check audio"):
            checks.append(AudioCheck(outcome.reason, outcome.detail) if isinstance(outcome, Failure) else outcome)
    return checks


def _check(path: Path, min_duration_s: float, silence_dbfs: float, keep_at_hz: int | None) -> AudioCheck:
    if problem := _file_problem(path):
        return problem
    try:
        decoded = decode_file(path, keep_at_hz)
    except Undecodable as err:
        return AudioCheck("undecodable", err.detail)
    heard = _Heard.of_file(decoded)
    if length_is_guessed(path):
        heard = replace(heard, declared_frames=0)  # a guess promises nothing to fall short of
    verdict = _verdict(heard, min_duration_s, silence_dbfs)
    return replace(verdict, audio=decoded.audio()) if verdict.ok else verdict


def check_window(path: str | Path, min_duration_s: float, silence_dbfs: float, sample_rate_hz: int,
                 duration_s: float, **log_mel_params) -> tuple[AudioCheck, np.ndarray | None]:
    """check_audio's verdict, from the middle window alone, and that window's spectrogram (n_mels,
    n_frames) when usable: for tagging one window of a long track, decoding only the window instead of
    the whole file (an MP3 up to the window's end: see musictag.audio.decoding).

    The checks that need no decoding are check_audio's own (path, bytes, header, sample rate, length
    by the header); the rest look at the window: undecodable, nan or inf, out-of-range or silent
    samples there. Damage outside the window goes unseen: it does not change the window's tags.
    The clean stage still decodes every file whole. Never raises for a bad file.
    """
    path = Path(path)
    if problem := _file_problem(path):
        return problem, None
    n_samples = round(duration_s * sample_rate_hz)
    try:
        with open_source(path) as source:
            header = _Heard(source.sample_rate_hz, channels=0, frames=source.n_frames, length_by="by the header")
            if not (verdict := _verdict(header, min_duration_s, silence_dbfs)).ok:  # judged before decoding
                return verdict, None
            window = middle_window(source, sample_rate_hz, n_samples)
    except ImplausibleRate as err:
        return AudioCheck("implausible sample rate", err.problem), None
    except Undecodable as err:
        if err.detail == NON_FINITE:  # met by the decoder of a float file
            return AudioCheck("nan or inf samples", _IN_WINDOW), None
        return AudioCheck("undecodable", first_line(err)), None
    except Exception as err:  # a decoder's unforeseen failure is the file's, as in check_audio
        return AudioCheck("undecodable", f"{type(err).__name__}: {first_line(err)}"), None
    audio = window[:min(n_samples, resampled_length(source.n_frames, source.sample_rate_hz, sample_rate_hz))]
    verdict = _verdict(header.with_samples(audio, _IN_WINDOW), min_duration_s, silence_dbfs)
    if not verdict.ok:
        return verdict, None
    try:
        return verdict, finite_log_mel(window, sample_rate_hz, **log_mel_params)
    except MusictagError as err:
        return replace(verdict, reason="out-of-range samples", detail=first_line(err)), None


@dataclass(frozen=True)
class _Heard:
    """What a check learnt of a file, for _verdict. The facts of the samples are None until they are
    decoded, and the rules that need them pass: check_window judges the header before decoding."""

    sample_rate_hz: int
    channels: int  # 0: not known
    frames: int  # decoded, or by the header (then `length_by` says so)
    declared_frames: int = 0  # what the header promises; 0: no promise
    error: str | None = None  # the decoder's complaint if it stopped before the end
    finite: bool | None = None
    peak: float | None = None  # the largest |sample|, among finite samples
    mean_square: float | None = None
    length_by: str = ""  # words after a "too short" duration: how the length is known
    samples_in: str = ""  # words after a sample rule's detail: which samples were heard

    @classmethod
    def of_file(cls, decoded: DecodedFile) -> _Heard:
        return cls(decoded.sample_rate_hz, decoded.channels, decoded.frames, decoded.declared_frames, decoded.error,
                   decoded.finite, decoded.peak, decoded.sum_squares / max(1, decoded.frames * decoded.channels))

    def with_samples(self, samples: np.ndarray, samples_in: str) -> _Heard:
        """These facts and those of mono `samples` (`samples_in` says which they are)."""
        return replace(self, finite=bool(np.isfinite(samples).all()),
                       peak=float(np.abs(samples).max()) if len(samples) else 0.0,
                       mean_square=float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0,
                       samples_in=samples_in)


def _verdict(heard: _Heard, min_duration_s: float, silence_dbfs: float) -> AudioCheck:
    """The rules a decodable file is judged by, in this order; a rule whose facts are None passes."""
    if problem := sample_rate_problem(heard.sample_rate_hz):
        return AudioCheck("implausible sample rate", problem, sample_rate_hz=heard.sample_rate_hz,
                          channels=heard.channels)
    duration_s = heard.frames / heard.sample_rate_hz
    verdict = functools.partial(AudioCheck, duration_s=duration_s, sample_rate_hz=heard.sample_rate_hz,
                                channels=heard.channels)
    if heard.error is not None and heard.frames == 0:
        return verdict("undecodable", heard.error)
    if heard.error is not None or heard.frames < (1 - DECLARED_LENGTH_TOLERANCE) * heard.declared_frames:
        stopped = f" ({heard.error})" if heard.error else ""
        return verdict("truncated", f"decoded {heard.frames} of {heard.declared_frames} frames{stopped}")
    if heard.finite is False:
        return verdict("nan or inf samples", heard.samples_in)
    if heard.peak is not None and heard.peak > MAX_SAMPLE_MAGNITUDE:
        return verdict("out-of-range samples", _words(f"peak {heard.peak:.3g}", heard.samples_in))
    if duration_s < min_duration_s:
        return verdict("too short", _words(f"{duration_s:.2f} s", heard.length_by))
    if heard.mean_square is not None:
        rms_dbfs = 10 * math.log10(max(heard.mean_square, 1e-30))
        if rms_dbfs < silence_dbfs:
            return verdict("silent", _words(f"RMS {rms_dbfs:.1f} dBFS", heard.samples_in))
    return verdict(None)


def _words(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _file_problem(path: Path) -> AudioCheck | None:
    """What shows before decoding: the path (missing, not a file, unreadable) and the bytes (_byte_problem)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return AudioCheck("missing")
    except OSError as err:
        return AudioCheck("unreadable", first_line(err))
    if not stat.S_ISREG(mode):
        return AudioCheck("not a file")
    try:
        with open(path, "rb") as file:
            return _byte_problem(file, path.suffix.lower())
    except OSError as err:
        return AudioCheck("unreadable", first_line(err))


def _byte_problem(file, suffix: str) -> AudioCheck | None:
    """What the bytes alone show: empty, all zeros, a header at odds with the extension, a short WAV."""
    head = file.read(4096)
    if not head:
        return AudioCheck("empty")
    if _all_zero(head) and all(_all_zero(chunk) for chunk in iter(functools.partial(file.read, 1 << 20), b"")):
        return AudioCheck("zeroed")
    container = container_of(file)
    expected = CONTAINER_OF_EXTENSION.get(suffix)
    if expected and container != expected:
        return AudioCheck("wrong header", f"a {suffix} file whose bytes are {container or 'no known format'}")
    if head[:4] == b"RIFF" and container == "wav":
        missing = wav_missing_bytes(file)
        if missing:
            return AudioCheck("truncated", f"the WAV data chunk lacks {missing} of its bytes")
    return None


def _all_zero(data: bytes) -> bool:
    return data.count(0) == len(data)
