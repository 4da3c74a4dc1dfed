"""Decoding audio as librosa.load does: dissertation Algorithm 1, lines 3-15, and whole files for the checks.

`load_window` decodes, downmixes, resamples to 12 kHz and keeps the middle 29.12 s (zero-padding a
shorter song); `spectrogram_of` hands that window to the log-mel front end (musictag.audio.frontend).
It gives what librosa.load gives, but reads only the window it keeps from a long track (an MP3 from
its start to the window's end, the only faithful way libsndfile reads it), decodes 16-bit FLAC with
dr_flac (same samples, faster than libsndfile) and skips librosa's per-call set-up. `decode_file`
decodes a whole file a block at a time, tallying what musictag.audio.checks judges a file by, and
keeps its audio, resampled, if asked.
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import audioread
import librosa
import miniaudio
import numpy as np
import soundfile as sf
import soxr

from musictag.audio.frontend import finite_log_mel
from musictag.errors import MusictagError
from musictag.files import first_line

# Extra audio read on each side of the window so that the resampler's edge transient falls
# outside it. soxr 'HQ' agrees with a whole-file resample to float32 rounding (<= 4e-7) from
# 10 ms on, at 11.025-96 kHz; 50 ms leaves room.
RESAMPLER_MARGIN_S = 0.05

# Sample rates a recording can have. The lowest in use are 8 kHz (telephony) and 5.5125 kHz (early
# computer audio, a quarter of 22.05 kHz); the highest, 768 kHz (the top rate of current ADCs and DACs).
# A header outside claims a rate no recording has (the 1 Hz WAV of a broken writer would otherwise be
# a 33-minute song at 2,000 frames), and would make the resampler produce junk at any length.
SAMPLE_RATE_RANGE_HZ = (4_000, 768_000)

# The audio formats read, by extension, and the container their first bytes must name (checks.py).
CONTAINER_OF_EXTENSION = {
    ".wav": "wav", ".wave": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg",
    ".mp3": "mpeg", ".mp2": "mpeg", ".aif": "aiff", ".aiff": "aiff", ".aifc": "aiff",
    ".m4a": "mp4", ".mp4": "mp4", ".aac": "aac", ".caf": "caf", ".au": "au", ".wv": "wavpack",
}
AUDIO_EXTENSIONS = tuple(CONTAINER_OF_EXTENSION)  # what a folder of audio is searched for

# Audio is decoded in blocks of about this many samples (frames x channels), so memory stays bounded
# by the window whatever channel count a header claims. soundfile drops the block in which a decoder
# fails, and a cut stream must show some audio before it fails, so blocks start small and double up to
# the largest (about 3 s of stereo at 44.1 kHz), where a block's overhead stops mattering.
_FIRST_BLOCK_SAMPLES = 1 << 14
_BLOCK_SAMPLES = 1 << 18
# Formats that libsndfile (1.2.2, through mpg123) decodes faithfully only in one read from the start.
# A read boundary or a seek near a quiet passage of an MP3 drops up to a frame of audio that a single
# read keeps (librosa.load reads once; dr_mp3 agrees with it to 5e-5): 8,192-frame reads changed 14 of
# 24 five-minute MP3s, by up to 0.56 of full scale, 1,048,576-frame reads still 1, and a seek then one
# read 13 of 168 windows. So these are read whole, or from the start up to the window's end.
_ONE_READ_FORMATS = {"MP3"}
_DECODE_ERRORS = (sf.SoundFileError, OSError, EOFError, audioread.DecodeError, librosa.ParameterError,
                  miniaudio.MiniaudioError)

# librosa.to_mono's words for a float file's NaN or inf samples, raised as it would: an Undecodable's detail
NON_FINITE = "Audio buffer is not finite everywhere"


class ImplausibleRate(MusictagError):
    """A header's sample rate that no recording has (sample_rate_problem)."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: implausible sample rate ({problem})")
        self.problem = problem


class Undecodable(MusictagError):
    """A file no decoder can read; `detail` is the decoder's complaint."""

    def __init__(self, path, detail: str):
        super().__init__(f"{path}: cannot decode audio ({detail}); musictag.audio.checks.check_audio says why")
        self.detail = detail


def sample_rate_problem(sample_rate_hz: int) -> str | None:
    """What is wrong with a header's sample rate, or None if a recording could have it."""
    low_hz, high_hz = SAMPLE_RATE_RANGE_HZ
    if low_hz <= sample_rate_hz <= high_hz:
        return None
    return f"{sample_rate_hz:,} Hz; recordings have {low_hz:,}-{high_hz:,} Hz"


# --- the middle window ------------------------------------------------------------------------------

def load_window(path: str | Path, sample_rate_hz: int, duration_s: float) -> np.ndarray:
    """Algorithm 1 lines 3-15: the middle `duration_s` of a song, mono at `sample_rate_hz`, float32
    of shape (round(duration_s * sample_rate_hz),); a shorter song is zero-padded at the end.

    Equal (to float32 rounding) to librosa.load(path, sr=sample_rate_hz) cropped to the middle,
    but only the window plus RESAMPLER_MARGIN_S each side is decoded and resampled, so a 5-minute
    FLAC costs what a 30-second one does (an MP3 is decoded from its start: _ONE_READ_FORMATS). The
    read starts on a sample that falls exactly on the target rate's grid, so the window's samples
    are the same instants as in a whole-file resample.
    """
    with open_source(path) as source:
        return middle_window(source, sample_rate_hz, round(duration_s * sample_rate_hz))


def spectrogram_of(path: str | Path, sample_rate_hz: int, duration_s: float, **log_mel_params) -> np.ndarray:
    """Algorithm 1 for one song: float32 (n_mels, n_frames), (96, 1366) with params.yaml's front end."""
    window = load_window(path, sample_rate_hz, duration_s)
    try:
        return finite_log_mel(window, sample_rate_hz, **log_mel_params)
    except MusictagError as err:  # check_audio rejects the files that do this
        raise MusictagError(f"{path}: {err}; musictag.audio.checks.check_audio says why") from None


@contextlib.contextmanager
def open_source(path: str | Path) -> Iterator[_FlacSource | _SoundfileSource | _AudioreadSource]:
    """The decoder for `path`: dr_flac for 16-bit FLAC, else libsndfile, else audioread, with its
    `n_frames` (by the header), `sample_rate_hz` and `read(start, stop)`. A decoding error, in opening
    or in reading, is an Undecodable; a sample rate no recording has, an ImplausibleRate."""
    try:
        with contextlib.ExitStack() as stack:
            source = _FlacSource.open(path)
            if source is None:
                try:
                    source = _SoundfileSource(stack.enter_context(sf.SoundFile(path)))
                except sf.SoundFileRuntimeError:  # a format libsndfile does not know
                    source = _AudioreadSource(path)
            if problem := sample_rate_problem(source.sample_rate_hz):
                raise ImplausibleRate(path, problem)
            yield source
    except _DECODE_ERRORS as err:
        raise Undecodable(path, first_line(err)) from None


def middle_window(source: _FlacSource | _SoundfileSource | _AudioreadSource, sample_rate_hz: int,
                  n_samples: int) -> np.ndarray:
    """Resampled window of `n_samples` around the middle of `source` (open_source), as described in
    load_window."""
    native_hz = source.sample_rate_hz
    n_resampled = resampled_length(source.n_frames, native_hz, sample_rate_hz)
    resample = functools.partial(_resample, native_hz=native_hz, sample_rate_hz=sample_rate_hz)
    if n_resampled <= n_samples:
        return _fix_length(resample(source.read(0, source.n_frames)), n_samples)
    offset = (n_resampled - n_samples) // 2
    # Both rates tick together every `step_out` output (`step_in` native) samples.
    common_hz = math.gcd(native_hz, sample_rate_hz)
    step_out, step_in = sample_rate_hz // common_hz, native_hz // common_hz
    margin = math.ceil(RESAMPLER_MARGIN_S * sample_rate_hz)
    first_step = max(0, offset - margin) // step_out
    last_step = -(-(offset + n_samples + margin) // step_out)
    start = first_step * step_out
    audio = resample(source.read(first_step * step_in, min(source.n_frames, last_step * step_in)))
    # _fix_length: through audioread the frame count is an estimate and the read may come up short
    return _fix_length(audio[offset - start:offset - start + n_samples], n_samples)


def _fix_length(audio: np.ndarray, size: int) -> np.ndarray:
    """librosa.util.fix_length on mono audio: cut to `size` samples, or zero-pad at the end (without
    librosa.util, which would import numba: ~1 s in each worker)."""
    return audio[:size] if len(audio) >= size else np.pad(audio, (0, size - len(audio)))


def _resample(audio: np.ndarray, native_hz: int, sample_rate_hz: int) -> np.ndarray:
    """librosa.resample(res_type="soxr_hq") bit for bit, but for its zero padding to the length it
    computes from the header, which _fix_length repeats; called directly, soxr spares librosa's
    checks and copies."""
    return audio if native_hz == sample_rate_hz else soxr.resample(audio, native_hz, sample_rate_hz, quality="HQ")


def resampled_length(n_frames: int, native_hz: int, sample_rate_hz: int) -> int:
    """librosa.resample's output length, in its floating-point arithmetic, which can exceed the exact
    ratio by one sample: 176,400 frames at 22,050 Hz give 96,001 at 12 kHz, not 96,000."""
    return math.ceil(n_frames * (float(sample_rate_hz) / native_hz))


class _SoundfileSource:
    """A file soundfile can open: frame count from its header, sample-accurate seeks."""

    def __init__(self, file: sf.SoundFile):
        self.file = file
        self.n_frames, self.sample_rate_hz = file.frames, file.samplerate

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) downmixed as librosa.load does, float32 of shape (<= stop - start,):
        shorter where the file ends early. Downmixed a block at a time, so memory follows the audio
        there is, never the frame or channel count a header claims (an MP3 is read from its start,
        in one block: _ONE_READ_FORMATS)."""
        one_read = self.file.format in _ONE_READ_FORMATS
        self.file.seek(0 if one_read else start)
        blocks = _soundfile_blocks(self.file, stop if one_read else stop - start)
        mono = []
        for block in (block[start:] for block in blocks) if one_read else blocks:
            if not np.isfinite(block).all():  # as librosa.to_mono (a float file)
                raise librosa.ParameterError(NON_FINITE)
            mono.append(_downmix(block))
        return np.concatenate(mono) if mono else np.zeros(0, dtype=np.float32)


def _downmix(block: np.ndarray) -> np.ndarray:
    """Frames of shape (n, channels) to mono (n,): librosa.to_mono bit for bit (its mean over channels
    adds them in order, then divides), in a twentieth of the time of block.mean(axis=1), which
    reduces along the short, strided axis."""
    if block.shape[1] == 1:
        return block[:, 0]
    if block.shape[1] >= 8:  # numpy's pairwise summation starts here: mean(axis=1) is then librosa's order
        return block.mean(axis=1)
    total = block[:, 0] + block[:, 1]
    for channel in range(2, block.shape[1]):
        total += block[:, channel]
    return np.divide(total, np.float32(block.shape[1]), out=total)  # in place: no second array


def _soundfile_blocks(file: sf.SoundFile, n_frames: int | None = None) -> Iterator[np.ndarray]:
    """float32 blocks of shape (frames, channels) from the file's position on, `n_frames` in all
    (None: to the end), from _FIRST_BLOCK_SAMPLES samples doubling to _BLOCK_SAMPLES whatever the
    channel count; a format of _ONE_READ_FORMATS in a single block."""
    if file.format in _ONE_READ_FORMATS:
        remaining = file.frames - file.tell()
        block = file.read(out=_read_buffer(remaining if n_frames is None else min(n_frames, remaining), file.channels))
        if len(block):
            yield block
        return
    block_samples, remaining = _FIRST_BLOCK_SAMPLES, n_frames
    while remaining is None or remaining > 0:
        block_frames = max(1, block_samples // file.channels)
        block = file.read(block_frames if remaining is None else min(block_frames, remaining),
                          dtype="float32", always_2d=True)
        if not len(block):
            return
        yield block
        block_samples = min(2 * block_samples, _BLOCK_SAMPLES)
        if remaining is not None:
            remaining -= len(block)


_buffer = np.zeros((0, 1), np.float32)


def _read_buffer(n_frames: int, channels: int) -> np.ndarray:
    """A float32 (n_frames, channels) array for one whole read, a view of this process's reused
    buffer: a fresh 117 MB array for each 5-minute MP3 costs ~45 ms in page faults, a fifth of
    decoding it. The buffer grows to the largest file read and is released before it does, so a worker
    holds at most one file's worth. What is read into it must be copied before the next read."""
    global _buffer
    if _buffer.size < n_frames * channels:
        _buffer = None  # release before allocating: the per-file memory limit counts both
        _buffer = np.empty(n_frames * channels, np.float32)
    return _buffer[:n_frames * channels].reshape(n_frames, channels)


class _FlacSource:
    """A 16-bit FLAC file through dr_flac (miniaudio), which decodes it in ~70% of libsndfile's time.
    FLAC is lossless, so both decoders give the same integers, and both scale them by 2**-15:
    the samples are bit for bit those libsndfile (and so librosa.load) gives."""

    def __init__(self, path: str, info: miniaudio.SoundFileInfo):
        self.path, self.channels = path, info.nchannels
        self.n_frames, self.sample_rate_hz = info.num_frames, info.sample_rate

    @classmethod
    def open(cls, path: str | Path) -> _FlacSource | None:
        """The source for `path` if it is a 16-bit FLAC file dr_flac can open, else None (libsndfile
        then reads it, or says why it cannot)."""
        if Path(path).suffix.lower() != ".flac":
            return None
        try:
            info = miniaudio.flac_get_file_info(str(path))
        except miniaudio.DecodeError:
            return None
        return cls(str(path), info) if info.sample_width == 2 else None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) downmixed as librosa.load does, float32 of shape (stop - start,)."""
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with contextlib.closing(miniaudio.flac_stream_file(self.path, frames_to_read=stop - start,
                                                           seek_frame=start)) as blocks:
            block = next(blocks, None)
        n_read = 0 if block is None else len(block) // self.channels
        if n_read != stop - start:  # dr_flac stops quietly at a cut; libsndfile would have raised
            raise miniaudio.DecodeError(f"decoded {n_read} of {stop - start} frames from frame {start}")
        audio = np.frombuffer(block, dtype=np.int16).reshape(n_read, self.channels).astype(np.float32)
        audio *= np.float32(2**-15)
        return _downmix(audio)


class _AudioreadSource:
    """Any other file, through audioread (librosa.load's fallback), which decodes from the start, so
    only the resampling is saved. Its length is the decoder's estimate."""

    def __init__(self, path: str | Path):
        self.path = path
        with _quiet_audioread(), audioread.audio_open(str(path)) as file:
            self.sample_rate_hz = int(file.samplerate)
            self.n_frames = round(file.duration * self.sample_rate_hz)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) downmixed as librosa.load does, float32 of shape (<= stop - start,)."""
        mono, position = [], 0
        for block in _audioread_blocks(self.path):
            if position + len(block) > start:
                mono.append(_downmix(block[max(0, start - position):stop - position]))
            position += len(block)
            if position >= stop:
                break
        return np.concatenate(mono) if mono else np.zeros(0, dtype=np.float32)


def _audioread_blocks(path: str | Path) -> Iterator[np.ndarray]:
    """The decoded audio of `path` as float32 blocks of shape (frames, channels), scaled as
    librosa.load scales audioread's 16-bit samples."""
    with _quiet_audioread(), audioread.audio_open(str(path)) as file:
        channels = int(file.channels)
        if channels < 1:
            raise audioread.DecodeError(f"{channels} channels")
        for buffer in file:
            yield np.frombuffer(buffer, "<i2").reshape(-1, channels) * np.float32(2**-15)


@contextlib.contextmanager
def _quiet_audioread() -> Iterator[None]:
    """Silence the notices that librosa fell back on (deprecated) audioread: here that is intended."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, FutureWarning, DeprecationWarning))
        yield


# --- a whole file -------------------------------------------------------------------------------------

@dataclass
class DecodedFile:
    """What decoding a whole file showed: its header, tallies of its samples (what the checks judge)
    and, with `keep_at_hz`, its audio."""

    sample_rate_hz: int
    channels: int
    declared_frames: int  # what the header promises
    keep_at_hz: int | None = None  # keep the audio, mono at this rate
    frames: int = 0
    kept: list[np.ndarray] = field(default_factory=list)  # the downmixed, resampled blocks
    sum_squares: float = 0.0
    finite: bool = True
    peak: float = 0.0  # the largest |sample| among the finite blocks
    error: str | None = None  # the decoder's complaint if it stopped before the end

    def add(self, block: np.ndarray) -> None:
        """Account for a decoded block of shape (frames, channels), in slices of _BLOCK_SAMPLES samples,
        so that the passes over a whole MP3 (_ONE_READ_FORMATS) read it from cache, not memory."""
        step = max(1, _BLOCK_SAMPLES // block.shape[1])
        for start in range(0, len(block), step):
            self._add_slice(block[start:start + step])

    def _add_slice(self, block: np.ndarray) -> None:
        self.frames += len(block)
        high, low = float(block.max()), float(block.min())  # NaN and inf show in these: no extra pass
        finite = math.isfinite(high) and math.isfinite(low)
        self.finite = self.finite and finite
        if finite:
            self.peak = max(self.peak, high, -low)
        self.sum_squares += float(np.vdot(block, block))
        if self.keep_at_hz is not None:
            self.kept.append(self._resampler.resample_chunk(_downmix(block)) if self._resampler
                             else _downmix(block).copy())  # a mono block may be a view of the decoder's

    @functools.cached_property
    def _resampler(self) -> soxr.ResampleStream | None:
        """_resample, a block at a time; None where the rates agree."""
        if self.sample_rate_hz == self.keep_at_hz:
            return None
        return soxr.ResampleStream(self.sample_rate_hz, self.keep_at_hz, 1, dtype="float32", quality="HQ")

    def audio(self) -> np.ndarray | None:
        """The kept audio, librosa.load's length: the resampler's tail, then padded or cut to the
        length librosa.resample computes."""
        if self.keep_at_hz is None:
            return None
        if self._resampler:
            self.kept.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        audio = np.zeros(resampled_length(self.frames, self.sample_rate_hz, self.keep_at_hz), np.float32)
        position = 0
        for chunk in self.kept:  # one copy, where concatenating then padding made two
            chunk = chunk[:len(audio) - position]
            audio[position:position + len(chunk)] = chunk
            position += len(chunk)
        return audio


def decode_file(path: Path, keep_at_hz: int | None) -> DecodedFile:
    """All of `path`, a block at a time, through libsndfile, else audioread: an Undecodable carrying
    libsndfile's complaint if neither reads it. A file whose header's rate no recording has is not
    decoded (its `frames` stay 0); libsndfile stopping part-way is its `error`."""
    try:
        file = sf.SoundFile(path)
    except sf.SoundFileRuntimeError as soundfile_err:  # a format libsndfile does not know
        try:
            return _decode_with_audioread(path, keep_at_hz)
        except _DECODE_ERRORS:
            raise Undecodable(path, first_line(soundfile_err)) from None
    with file:
        return _decode_with_soundfile(file, keep_at_hz)


def _decode_with_soundfile(file: sf.SoundFile, keep_at_hz: int | None) -> DecodedFile:
    decoded = DecodedFile(file.samplerate, file.channels, file.frames, keep_at_hz)
    if sample_rate_problem(decoded.sample_rate_hz):  # not decoded: the checks say why
        return decoded
    try:
        for block in _soundfile_blocks(file):
            decoded.add(block)
    except sf.SoundFileError as err:
        decoded.error = first_line(err)
    return decoded


def _decode_with_audioread(path: Path, keep_at_hz: int | None) -> DecodedFile:
    """Through audioread, which neither reports a header length nor tells a cut stream from an end."""
    with _quiet_audioread(), audioread.audio_open(str(path)) as file:
        decoded = DecodedFile(int(file.samplerate), int(file.channels), declared_frames=0, keep_at_hz=keep_at_hz)
    if sample_rate_problem(decoded.sample_rate_hz) is None:  # else not decoded: the checks say why
        for block in _audioread_blocks(path):
            decoded.add(block)
    decoded.declared_frames = decoded.frames
    return decoded
