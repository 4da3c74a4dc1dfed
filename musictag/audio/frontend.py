"""The log-mel front end of Choi et al. (2017): dissertation Algorithm 1, lines 16-19.

A 96-band mel power spectrogram, squared, in dB, of mono audio already at the front end's rate:
what librosa.feature.melspectrogram then librosa.power_to_db give, without librosa's per-call
set-up. Decoding the audio it takes is musictag.audio.decoding's.
"""
from __future__ import annotations

import functools
import math

import librosa
import numpy as np
import scipy.fft
import scipy.sparse

from musictag.errors import MusictagError

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


def finite_log_mel(window: np.ndarray, sample_rate_hz: int, **log_mel_params) -> np.ndarray:
    """log_mel of one window of mono audio, (n_mels, n_frames); a MusictagError if any value is not
    finite (samples so far beyond full scale that the squared mel power overflows float32)."""
    with np.errstate(over="ignore", invalid="ignore"):  # said by _finite, in one line
        return _finite(log_mel(window, sample_rate_hz, **log_mel_params))


def song_spectrograms(audio: np.ndarray, sample_rate_hz: int, duration_s: float, **log_mel_params) -> np.ndarray:
    """Algorithm 1 over a whole song: mono `audio` of shape (n,), already at `sample_rate_hz`
    (check_audio(keep_at_hz=...) gives it, so a file is decoded once for checking and tagging), cut
    into consecutive windows of `duration_s`, the last zero-padded, as librosa.load(sr=...) of the
    song cut up would be: float32 (n_windows, n_mels, n_frames); finite, as finite_log_mel's."""
    n_samples, edge = round(duration_s * sample_rate_hz), log_mel_params["n_fft"] // 2
    n_windows = max(1, math.ceil(len(audio) / n_samples))
    padded = np.zeros((n_windows, edge + n_samples + edge), np.float32)  # log_mel's padding, one copy
    for i in range(n_windows):
        cut = audio[i * n_samples:(i + 1) * n_samples]
        padded[i, edge:edge + len(cut)] = cut
    with np.errstate(over="ignore", invalid="ignore"):  # said by _finite, in one line
        return _finite(np.stack([_log_mel_of_padded(row, sample_rate_hz, **log_mel_params) for row in padded]))


def _finite(spectrograms: np.ndarray) -> np.ndarray:
    """`spectrograms`, or a MusictagError if any value is not finite."""
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
    """Do the front end's one-off set-up now: librosa imports its filters module (and so scipy.signal,
    ~1 s) on first use, then the window and filterbank are cached. Processes forked afterwards, as
    the workers of extract's process pool are, start with all of it."""
    log_mel(np.zeros(round(duration_s * sample_rate_hz), dtype=np.float32), sample_rate_hz, **log_mel_params)
