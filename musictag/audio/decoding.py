"""Audio decoding, validation and the log-mel front end of Choi et al. (2017).

`spectrogram_of` is Algorithm 1 of the dissertation (section 3.1.2): decode, downmix, resample to
12 kHz, keep the middle 29.12 s (zero-pad a shorter song), 96-band mel power spectrogram, square,
dB. It gives what a plain librosa implementation gives, but reads only the window it keeps from a
long track (an MP3 from its start to the window's end, the only faithful way libsndfile reads it),
decodes 16-bit FLAC with dr_flac (same samples, faster than libsndfile) and skips librosa's per-call
set-up. `check_audio` tells the clean stage whether a file
can be used, and if not, why, in a fixed vocabulary (`REJECT_REASONS`); `check_many` runs it over a
catalogue with every file bounded in time and memory (musictag.audio.workers), so one hostile file costs
itself only.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import audioread
import librosa
import miniaudio
import numpy as np
import scipy.fft
import scipy.sparse
import soundfile as sf
import soxr
from tqdm import tqdm

from musictag.errors import MusictagError
from musictag.files import first_line
from musictag.audio.workers import FAILURE_REASONS, BoundedPool, Failure

# Extra audio read on each side of the window so that the resampler's edge transient falls
# outside it. soxr 'HQ' agrees with a whole-file resample to float32 rounding (<= 4e-7) from
# 10 ms on, at 11.025-96 kHz; 50 ms leaves room.
RESAMPLER_MARGIN_S = 0.05

# Sample rates a recording can have. The lowest in use are 8 kHz (telephony) and 5.5125 kHz (early
# computer audio, a quarter of 22.05 kHz); the highest, 768 kHz (the top rate of current ADCs and DACs).
# A header outside claims a rate no recording has (the 1 Hz WAV of a broken writer would otherwise be
# a 33-minute song at 2,000 frames), and would make the resampler produce junk at any length.
SAMPLE_RATE_RANGE_HZ = (4_000, 768_000)

# Float samples beyond this (+60 dBFS) are damage, not overs (a master's overs reach a few dB), and the
# squared mel power of samples near 2.6e6 overflows float32, so the spectrogram would not be finite.
MAX_SAMPLE_MAGNITUDE = 1000.0

REJECT_REASONS = {  # in the order check_audio tests them
    "missing": "the path does not exist",
    "not a file": "the path is a directory or another non-regular file",
    "unreadable": "the file cannot be opened (permissions or an I/O error)",
    "empty": "the file has 0 bytes",
    "zeroed": "every byte of the file is zero",
    "wrong header": "the first bytes name a different format than the extension, or none known",
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

_NON_FINITE = "Audio buffer is not finite everywhere"  # librosa.to_mono's words, raised as it would

_CONTAINER_OF_EXTENSION = {
    ".wav": "wav", ".wave": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg",
    ".mp3": "mpeg", ".mp2": "mpeg", ".aif": "aiff", ".aiff": "aiff", ".aifc": "aiff",
    ".m4a": "mp4", ".mp4": "mp4", ".aac": "aac", ".caf": "caf", ".au": "au", ".wv": "wavpack",
}
AUDIO_EXTENSIONS = tuple(_CONTAINER_OF_EXTENSION)  # what a folder of audio is searched for
_CONTAINER_OF_MAGIC = {b"fLaC": "flac", b"OggS": "ogg", b"caff": "caf", b".snd": "au", b"wvpk": "wavpack"}


# --- log-mel front end --------------------------------------------------------------------------------

# Frames transformed at once: a whole song's frames (2.8 MB) would be a fresh allocation for every
# song, which costs more in page faults than the FFT itself; 128 frames (256 kB) stay in cache.
_STFT_BLOCK_FRAMES = 128


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate_hz: int, n_fft: int, n_mels: int) -> scipy.sparse.csr_array:
    """librosa's (Slaney) mel filterbank, shape (n_mels, 1 + n_fft // 2). Stored sparse: only ~2%
    of it is non-zero, and the sparse product is 20x faster than the dense one."""
    return scipy.sparse.csr_array(librosa.filters.mel(sr=sample_rate_hz, n_fft=n_fft, n_mels=n_mels))


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window of librosa.stft, float32, shape (n_fft,)."""
    window = librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32)
    window.flags.writeable = False
    return window


def log_mel(audio: np.ndarray, sample_rate_hz: int, n_fft: int, hop_length: int, n_mels: int, square_power: bool,
            ref: float, amin: float, top_db: float | None) -> np.ndarray:
    """Algorithm 1 lines 16-19 on mono `audio` of shape (n_samples,): float32 (n_mels, n_frames).

    The mel power spectrogram of librosa.feature.melspectrogram (centred, zero-padded frames), then
    squared as in the dissertation and in Choi's code, then librosa.power_to_db: with params.yaml's
    front end the values are 40*log10|mel|, floored 80 dB below the song's peak. n_frames = 1 + n_samples // hop.
    The STFT is scipy.fft.rfft on the frames of librosa.util.frame, in float32 (3x faster than
    librosa.stft, which transforms in float64; the powers agree to ~1e-6 relative), a block of
    frames at a time.
    """
    padded = np.pad(np.asarray(audio, dtype=np.float32), n_fft // 2)  # librosa.stft(center=True, pad_mode="constant")
    return _log_mel_of_padded(padded, sample_rate_hz, n_fft, hop_length, n_mels, square_power, ref, amin, top_db)


def _log_mel_of_padded(padded: np.ndarray, sample_rate_hz: int, n_fft: int, hop_length: int, n_mels: int,
                       square_power: bool, ref: float, amin: float, top_db: float | None) -> np.ndarray:
    """log_mel of audio already zero-padded by n_fft // 2 each side."""
    # librosa.util.frame(axis=0), the same view; librosa.util would import numba (~1 s) in each worker
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window, mel_basis = _hann(n_fft), _mel_basis(sample_rate_hz, n_fft, n_mels)
    mel_power = np.empty((n_mels, len(frames)), dtype=np.float32)
    for start in range(0, len(frames), _STFT_BLOCK_FRAMES):
        block = slice(start, start + _STFT_BLOCK_FRAMES)
        spectrum = scipy.fft.rfft(frames[block] * window, axis=1)  # (block frames, 1 + n_fft // 2)
        mel_power[:, block] = mel_basis @ (spectrum.real**2 + spectrum.imag**2).T
    if square_power:
        mel_power **= 2
    # librosa.power_to_db in place, through the natural log: numpy's float32 log is vectorised and
    # its log10 is not (3x slower); the results differ by float32 rounding (~1e-5 dB)
    np.maximum(mel_power, amin, out=mel_power)
    np.log(mel_power, out=mel_power)
    mel_power *= 10 / math.log(10)
    mel_power -= 10 * math.log10(max(amin, abs(ref)))
    if top_db is not None:
        np.maximum(mel_power, mel_power.max() - top_db, out=mel_power)
    return mel_power


# --- decoding the middle window -----------------------------------------------------------------------

def load_window(path: str | Path, sample_rate_hz: int, duration_s: float) -> np.ndarray:
    """Algorithm 1 lines 3-15: the middle `duration_s` of a song, mono at `sample_rate_hz`, float32
    of shape (round(duration_s * sample_rate_hz),); a shorter song is zero-padded at the end.

    Equal (to float32 rounding) to librosa.load(path, sr=sample_rate_hz) cropped to the middle,
    but only the window plus RESAMPLER_MARGIN_S each side is decoded and resampled, so a 5-minute
    FLAC costs what a 30-second one does (an MP3 is decoded from its start: _ONE_READ_FORMATS). The
    read starts on a sample that falls exactly on the target rate's grid, so the window's samples
    are the same instants as in a whole-file resample.
    """
    with _source(path) as source:
        return _middle_window(source, sample_rate_hz, round(duration_s * sample_rate_hz))


def song_spectrograms(audio: np.ndarray, sample_rate_hz: int, duration_s: float, **log_mel_params) -> np.ndarray:
    """Algorithm 1 over a whole song: mono `audio` of shape (n,), already at `sample_rate_hz`
    (check_audio(keep_at_hz=...) gives it, so a file is decoded once for checking and tagging), cut
    into consecutive windows of `duration_s`, the last zero-padded, as librosa.load(sr=...) of the
    song cut up would be: float32 (n_windows, n_mels, n_frames)."""
    n_samples, edge = round(duration_s * sample_rate_hz), log_mel_params["n_fft"] // 2
    n_windows = max(1, math.ceil(len(audio) / n_samples))
    padded = np.zeros((n_windows, edge + n_samples + edge), np.float32)  # log_mel's padding, one copy
    for i in range(n_windows):
        cut = audio[i * n_samples:(i + 1) * n_samples]
        padded[i, edge:edge + len(cut)] = cut
    return _finite_log_mels_of_padded(padded, sample_rate_hz, **log_mel_params)


class _ImplausibleRate(MusictagError):
    """A header's sample rate that no recording has (_sample_rate_problem)."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: implausible sample rate ({problem})")
        self.problem = problem


@contextlib.contextmanager
def _source(path: str | Path) -> Iterator[_FlacSource | _SoundfileSource | _AudioreadSource]:
    """The decoder for `path`: dr_flac for 16-bit FLAC, else libsndfile, else audioread. A decoding
    error, or a sample rate no recording has, is a MusictagError naming the file."""
    try:
        with contextlib.ExitStack() as stack:
            source = _FlacSource.open(path)
            if source is None:
                try:
                    source = _SoundfileSource(stack.enter_context(sf.SoundFile(path)))
                except sf.SoundFileRuntimeError:  # a format libsndfile does not know
                    source = _AudioreadSource(path)
            if problem := _sample_rate_problem(source.sample_rate_hz):
                raise _ImplausibleRate(path, problem)
            yield source
    except _DECODE_ERRORS as err:
        raise MusictagError(f"{path}: cannot decode audio ({first_line(err)}); "
                            "musictag.audio.decoding.check_audio says why") from None


def spectrogram_of(path: str | Path, sample_rate_hz: int, duration_s: float, **log_mel_params) -> np.ndarray:
    """Algorithm 1 for one song: float32 (n_mels, n_frames), (96, 1366) with params.yaml's front end."""
    window = load_window(path, sample_rate_hz, duration_s)
    try:
        return _finite_log_mels(window[np.newaxis], sample_rate_hz, **log_mel_params)[0]
    except MusictagError as err:  # check_audio rejects the files that do this
        raise MusictagError(f"{path}: {err}; musictag.audio.decoding.check_audio says why") from None


def _finite_log_mels(windows: np.ndarray, sample_rate_hz: int, **log_mel_params) -> np.ndarray:
    """log_mel of each window of (n_windows, n_samples), stacked; a MusictagError if any value is not
    finite (samples so far beyond full scale that the squared mel power overflows float32)."""
    edge = log_mel_params["n_fft"] // 2  # log_mel's padding, for all windows at once
    padded = np.pad(np.asarray(windows, dtype=np.float32), ((0, 0), (edge, edge)))
    return _finite_log_mels_of_padded(padded, sample_rate_hz, **log_mel_params)


def _finite_log_mels_of_padded(padded: np.ndarray, sample_rate_hz: int, **log_mel_params) -> np.ndarray:
    """_finite_log_mels of windows already padded by n_fft // 2 each side."""
    with np.errstate(over="ignore", invalid="ignore"):  # said below, in one line
        spectrograms = np.stack([_log_mel_of_padded(row, sample_rate_hz, **log_mel_params) for row in padded])
    if not np.isfinite(spectrograms).all():
        raise MusictagError("the spectrogram is not finite (samples far beyond full scale)")
    return spectrograms


def spectrogram_shape(sample_rate_hz: int, duration_s: float, n_fft: int, hop_length: int, n_mels: int,
                      **_) -> tuple[int, int]:
    """(n_mels, n_frames) of what spectrogram_of returns with these front-end params, without audio:
    the frames log_mel cuts from the window padded by n_fft // 2 each side."""
    padded_samples = round(duration_s * sample_rate_hz) + 2 * (n_fft // 2)
    return n_mels, len(range(0, padded_samples - n_fft + 1, hop_length))


def warm_up(sample_rate_hz: int, duration_s: float, **log_mel_params) -> None:
    """Do spectrogram_of's one-off set-up now: librosa imports its filters module (and so scipy.signal,
    ~1 s) on first use, then the window and filterbank are cached. Processes forked afterwards, as
    the workers of extract's process pool are, start with all of it."""
    log_mel(np.zeros(round(duration_s * sample_rate_hz), dtype=np.float32), sample_rate_hz, **log_mel_params)


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
                raise librosa.ParameterError(_NON_FINITE)
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


def _resample(audio: np.ndarray, native_hz: int, sample_rate_hz: int) -> np.ndarray:
    """librosa.resample(res_type="soxr_hq") bit for bit, but for its zero padding to the length it
    computes from the header, which _fix_length repeats; called directly, soxr spares librosa's
    checks and copies."""
    return audio if native_hz == sample_rate_hz else soxr.resample(audio, native_hz, sample_rate_hz, quality="HQ")


def _resampled_length(n_frames: int, native_hz: int, sample_rate_hz: int) -> int:
    """librosa.resample's output length, in its floating-point arithmetic, which can exceed the exact
    ratio by one sample: 176,400 frames at 22,050 Hz give 96,001 at 12 kHz, not 96,000."""
    return math.ceil(n_frames * (float(sample_rate_hz) / native_hz))


def _middle_window(source: _FlacSource | _SoundfileSource | _AudioreadSource, sample_rate_hz: int,
                   n_samples: int) -> np.ndarray:
    """Resampled window of `n_samples` around the middle of `source`, as described in load_window."""
    native_hz = source.sample_rate_hz
    n_resampled = _resampled_length(source.n_frames, native_hz, sample_rate_hz)
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


@contextlib.contextmanager
def _quiet_audioread() -> Iterator[None]:
    """Silence the notices that librosa fell back on (deprecated) audioread: here that is intended."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, FutureWarning, DeprecationWarning))
        yield


# --- checking a file ------------------------------------------------------------------------------------

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


@dataclass
class _Stream:
    """What decoding a whole file showed."""

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
        audio = np.zeros(_resampled_length(self.frames, self.sample_rate_hz, self.keep_at_hz), np.float32)
        position = 0
        for chunk in self.kept:  # one copy, where concatenating then padding made two
            chunk = chunk[:len(audio) - position]
            audio[position:position + len(chunk)] = chunk
            position += len(chunk)
        return audio


def _check(path: Path, min_duration_s: float, silence_dbfs: float, keep_at_hz: int | None) -> AudioCheck:
    if problem := _file_problem(path):
        return problem
    try:
        file = sf.SoundFile(path)
    except sf.SoundFileRuntimeError as soundfile_err:  # a format libsndfile does not know
        try:
            stream = _decode_with_audioread(path, keep_at_hz)
        except _DECODE_ERRORS:
            return AudioCheck("undecodable", first_line(soundfile_err))
    else:
        with file:
            stream = _decode_with_soundfile(file, keep_at_hz)
    return _verdict(stream, min_duration_s, silence_dbfs)


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


def check_window(path: str | Path, min_duration_s: float, silence_dbfs: float, sample_rate_hz: int,
                 duration_s: float, **log_mel_params) -> tuple[AudioCheck, np.ndarray | None]:
    """check_audio's verdict, from the middle window alone, and that window's spectrogram (n_mels,
    n_frames) when usable: for tagging one window of a long track, decoding only the window instead of
    the whole file (an MP3 up to the window's end: _ONE_READ_FORMATS).

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
        with _source(path) as source:
            header_s = source.n_frames / source.sample_rate_hz
            verdict = functools.partial(AudioCheck, duration_s=header_s, sample_rate_hz=source.sample_rate_hz)
            if header_s < min_duration_s:
                return verdict("too short", f"{header_s:.2f} s by the header"), None
            window = _middle_window(source, sample_rate_hz, n_samples)
    except _ImplausibleRate as err:
        return AudioCheck("implausible sample rate", err.problem), None
    except MusictagError as err:
        if _NON_FINITE in str(err):
            return AudioCheck("nan or inf samples", "in the middle window"), None
        return AudioCheck("undecodable", first_line(err)), None
    except Exception as err:  # a decoder's unforeseen failure is the file's, as in check_audio
        return AudioCheck("undecodable", f"{type(err).__name__}: {first_line(err)}"), None
    heard = window[:min(n_samples, _resampled_length(source.n_frames, source.sample_rate_hz, sample_rate_hz))]
    if not np.isfinite(heard).all():
        return verdict("nan or inf samples", "in the middle window"), None
    if len(heard) and (peak := float(np.abs(heard).max())) > MAX_SAMPLE_MAGNITUDE:
        return verdict("out-of-range samples", f"peak {peak:.3g} in the middle window"), None
    rms_dbfs = 10 * math.log10(max(float(np.mean(np.square(heard, dtype=np.float64))) if len(heard) else 0.0, 1e-30))
    if rms_dbfs < silence_dbfs:
        return verdict("silent", f"RMS {rms_dbfs:.1f} dBFS in the middle window"), None
    try:
        return verdict(None), _finite_log_mels(window[np.newaxis], sample_rate_hz, **log_mel_params)[0]
    except MusictagError as err:
        return verdict("out-of-range samples", first_line(err)), None


def _sample_rate_problem(sample_rate_hz: int) -> str | None:
    """What is wrong with a header's sample rate, or None if a recording could have it."""
    low_hz, high_hz = SAMPLE_RATE_RANGE_HZ
    if low_hz <= sample_rate_hz <= high_hz:
        return None
    return f"{sample_rate_hz:,} Hz; recordings have {low_hz:,}-{high_hz:,} Hz"


def _byte_problem(file, suffix: str) -> AudioCheck | None:
    """What the bytes alone show: empty, all zeros, a header at odds with the extension, a short WAV."""
    head = file.read(4096)
    if not head:
        return AudioCheck("empty")
    if _all_zero(head) and all(_all_zero(chunk) for chunk in iter(functools.partial(file.read, 1 << 20), b"")):
        return AudioCheck("zeroed")
    container = _container(file)
    expected = _CONTAINER_OF_EXTENSION.get(suffix)
    if expected and container != expected:
        return AudioCheck("wrong header", f"a {suffix} file whose bytes are {container or 'no known format'}")
    if head[:4] == b"RIFF" and container == "wav":
        missing = _wav_missing_bytes(file)
        if missing:
            return AudioCheck("truncated", f"the WAV data chunk lacks {missing} of its bytes")
    return None


def _all_zero(data: bytes) -> bool:
    return data.count(0) == len(data)


def _container(file) -> str | None:
    """The format that the first bytes of `file` name, looking past ID3v2 tags; None if unknown."""
    offset = 0
    while True:
        file.seek(offset)
        head = file.read(12)
        if head[:3] != b"ID3" or len(head) < 10:
            break
        tag_size = sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))  # syncsafe
        offset += 10 + tag_size + (10 if head[5] & 0x10 else 0)  # header, tag, optional footer
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG frame sync
        return "aac" if head[1] & 0x06 == 0 else "mpeg"  # ADTS AAC has layer bits 00
    return _CONTAINER_OF_MAGIC.get(head[:4])


def _wav_missing_bytes(file) -> int:
    """Bytes the RIFF data chunk declares beyond the end of the file. libsndfile quietly reads
    what is there, so only the header shows that a WAV was cut short."""
    size = file.seek(0, os.SEEK_END)
    position = 12
    while position + 8 <= size:
        file.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
        if chunk_id == b"data":  # 0xFFFFFFFF: size unknown (streamed or RF64)
            return 0 if chunk_size == 0xFFFFFFFF else max(0, position + 8 + chunk_size - size)
        position += 8 + chunk_size + chunk_size % 2  # chunks are word-aligned
    return 0


def _decode_with_soundfile(file: sf.SoundFile, keep_at_hz: int | None) -> _Stream:
    stream = _Stream(file.samplerate, file.channels, file.frames, keep_at_hz)
    if _sample_rate_problem(stream.sample_rate_hz):  # not decoded: _verdict says why
        return stream
    try:
        for block in _soundfile_blocks(file):
            stream.add(block)
    except sf.SoundFileError as err:
        stream.error = first_line(err)
    return stream


def _decode_with_audioread(path: Path, keep_at_hz: int | None) -> _Stream:
    """Through audioread, which neither reports a header length nor tells a cut stream from an end."""
    with _quiet_audioread(), audioread.audio_open(str(path)) as file:
        stream = _Stream(int(file.samplerate), int(file.channels), declared_frames=0, keep_at_hz=keep_at_hz)
    if _sample_rate_problem(stream.sample_rate_hz) is None:  # else not decoded: _verdict says why
        for block in _audioread_blocks(path):
            stream.add(block)
    stream.declared_frames = stream.frames
    return stream


def _verdict(stream: _Stream, min_duration_s: float, silence_dbfs: float) -> AudioCheck:
    if problem := _sample_rate_problem(stream.sample_rate_hz):
        return AudioCheck("implausible sample rate", problem, sample_rate_hz=stream.sample_rate_hz,
                          channels=stream.channels)
    duration_s = stream.frames / stream.sample_rate_hz
    verdict = functools.partial(AudioCheck, duration_s=duration_s, sample_rate_hz=stream.sample_rate_hz,
                                channels=stream.channels)
    if stream.error is not None and stream.frames == 0:
        return verdict("undecodable", stream.error)
    if stream.error is not None or stream.frames < (1 - DECLARED_LENGTH_TOLERANCE) * stream.declared_frames:
        stopped = f" ({stream.error})" if stream.error else ""
        return verdict("truncated", f"decoded {stream.frames} of {stream.declared_frames} frames{stopped}")
    if not stream.finite:
        return verdict("nan or inf samples")
    if stream.peak > MAX_SAMPLE_MAGNITUDE:
        return verdict("out-of-range samples", f"peak {stream.peak:.3g}")
    if duration_s < min_duration_s:
        return verdict("too short", f"{duration_s:.2f} s")
    mean_square = stream.sum_squares / max(1, stream.frames * stream.channels)
    rms_dbfs = 10 * math.log10(max(mean_square, 1e-30))
    if rms_dbfs < silence_dbfs:
        return verdict("silent", f"RMS {rms_dbfs:.1f} dBFS")
    return verdict(None, audio=stream.audio())
