"""Audio files for tests, built for real: a music-like signal, and every kind of bad file with the reason
the checks must give it (used by the audio, fault and fuzz tests)."""
import struct

import numpy as np
import pytest
import soundfile as sf

CAN_WRITE_MP3 = "MP3" in sf.available_formats()


def music(duration_s: float, sample_rate_hz: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A gliding A-minor chord with a bright partial and noise, float32 of shape (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * sample_rate_hz)) / sample_rate_hz
    glide = 1 + 0.002 * np.sin(2 * np.pi * 0.3 * t)
    chord = sum(0.15 * np.sin(2 * np.pi * f * t * glide) for f in (220.0, 261.6, 329.6, 1760.0))
    channels_ = [chord * (1 - 0.2 * c) + 0.02 * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(channels_, axis=1).astype(np.float32)


def write(path, duration_s=3.0, sample_rate_hz=22050, channels=1, **options):
    sf.write(path, music(duration_s, sample_rate_hz, channels), sample_rate_hz, **options)
    return path


def cut(path, keep_fraction):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    return path


def build_directory(tmp_path):
    (tmp_path / "song.wav").mkdir()
    return tmp_path / "song.wav"


def build_nan_wav(tmp_path):
    samples = music(3, 22050)
    samples[1000:1010] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 22050, subtype="FLOAT")
    return tmp_path / "nan.wav"


def build_huge_sample_wav(tmp_path):
    """One sample of 1e30 in a float WAV (a flipped exponent byte): finite, but its spectrogram is not."""
    samples = music(3, 22050)
    samples[30000] = 1e30
    sf.write(tmp_path / "huge.wav", samples, 22050, subtype="FLOAT")
    return tmp_path / "huge.wav"


def build_bytes(name, data):
    def build(tmp_path):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name
    return build


def build_silent(tmp_path):
    """Digital silence behind a valid PCM header (so not 'zeroed')."""
    sf.write(tmp_path / "silent.wav", np.zeros(66150), 22050, subtype="PCM_16")
    return tmp_path / "silent.wav"


def wav_claiming_rate(sample_rate_hz):
    """A 2,000-frame 16-bit WAV whose header claims `sample_rate_hz` (as a broken writer leaves it)."""
    def build(tmp_path):
        path = write(tmp_path / f"rate{sample_rate_hz}.wav", duration_s=2000 / 22050, subtype="PCM_16")
        data = bytearray(path.read_bytes())
        data[24:32] = struct.pack("<II", sample_rate_hz, 2 * sample_rate_hz)  # fmt: rate, byte rate
        path.write_bytes(data)
        return path
    return build


needs_mp3 = pytest.mark.skipif(not CAN_WRITE_MP3, reason="libsndfile without MP3")
BAD_FILES = [  # (build in tmp_path, expected reason)
    pytest.param(lambda tmp_path: tmp_path / "nowhere.wav", "missing", id="missing"),
    pytest.param(build_directory, "not a file", id="directory"),
    pytest.param(build_bytes("empty.wav", b""), "empty", id="zero bytes"),
    pytest.param(build_bytes("zeros.wav", bytes(4096)), "zeroed", id="4096 zero bytes"),
    pytest.param(build_bytes("garbage.mp3", b"not audio " + np.random.default_rng(1).bytes(20000)),
                 "wrong header", id="random bytes as .mp3"),
    pytest.param(lambda tmp_path: write(tmp_path / "song.wav", format="FLAC"), "wrong header", id="FLAC named .wav"),
    pytest.param(lambda tmp_path: write(tmp_path / "song.mp3", format="WAV"), "wrong header", id="WAV named .mp3"),
    pytest.param(build_bytes("junk.flac", b"fLaC" + np.random.default_rng(2).bytes(20000)), "undecodable",
                 id="FLAC magic then junk"),
    pytest.param(lambda tmp_path: cut(write(tmp_path / "half.flac"), 0.5), "truncated", id="FLAC cut in half"),
    pytest.param(lambda tmp_path: cut(write(tmp_path / "cut.wav", subtype="PCM_16"), 0.6), "truncated",
                 id="WAV cut to 60%"),
    pytest.param(lambda tmp_path: cut(write(tmp_path / "half.mp3"), 0.5), "truncated", id="MP3 cut in half",
                 marks=needs_mp3),
    pytest.param(lambda tmp_path: write(tmp_path / "short.wav", duration_s=0.2), "too short", id="0.2 s"),
    pytest.param(build_silent, "silent", id="digital silence"),
    pytest.param(build_nan_wav, "nan or inf samples", id="NaN in float WAV"),
    pytest.param(build_huge_sample_wav, "out-of-range samples", id="1e30 in float WAV"),
    pytest.param(wav_claiming_rate(1), "implausible sample rate", id="1 Hz WAV of 2,000 frames"),
    pytest.param(wav_claiming_rate(3_000_000), "implausible sample rate", id="3 MHz WAV"),
]
