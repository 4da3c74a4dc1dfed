"""musictag.audio (checks, decoding, frontend): every kind of bad file built for real, and the front end against
plain librosa."""
import math
import os
import signal
import time

import librosa
import numpy as np
import pytest
import soundfile as sf
from audio_files import BAD_FILES, build_bytes, build_huge_sample_wav, build_nan_wav, cut, music, needs_mp3, wav_claiming_rate, write
from conftest import FRONT_END

from musictag.audio import checks, decoding, frontend
from musictag.errors import MusictagError
from musictag.params import defaults

WINDOW_SAMPLES = 349_440  # 29.12 s at 12 kHz
CLEAN = defaults("clean")  # check_many's params: check_audio's thresholds and the workers' limits
CHECKS = {key: CLEAN[key] for key in ("min_duration_s", "silence_dbfs")}  # check_audio's thresholds
WINDOW = {key: FRONT_END[key] for key in ("sample_rate_hz", "duration_s")}  # load_window's params
LOG_MEL = {key: value for key, value in FRONT_END.items() if key != "duration_s"}  # log_mel's params


def algorithm1_reference(path) -> np.ndarray:
    """Algorithm 1 as the dissertation wrote it, straight librosa calls on the whole file."""
    y, _ = librosa.load(path, sr=12000)
    if len(y) < WINDOW_SAMPLES:
        y = librosa.util.fix_length(y, size=WINDOW_SAMPLES)
    else:
        offset = (len(y) - WINDOW_SAMPLES) // 2
        y = y[offset:offset + WINDOW_SAMPLES]
    S = librosa.feature.melspectrogram(y=y, sr=12000, n_fft=512, hop_length=256, n_mels=96)
    return librosa.power_to_db(S**2, ref=1.0)


def full_decode_window(path, sample_rate_hz=12000, n_samples=WINDOW_SAMPLES) -> np.ndarray:
    """librosa.load of the whole file, cropped to the middle: what load_window must equal."""
    y, _ = librosa.load(path, sr=sample_rate_hz)
    offset = (len(y) - n_samples) // 2
    return y[offset:offset + n_samples]


# --- check_audio: bad files ------------------------------------------------------------------------------

@pytest.mark.parametrize("build, reason", BAD_FILES)
def test_bad_file_gets_its_reason(tmp_path, build, reason):
    result = checks.check_audio(build(tmp_path), **CHECKS)
    assert result.reason == reason, result
    assert not result.ok


def test_every_reason_is_built_by_a_test():
    built = {param.values[1] for param in BAD_FILES} | {"unreadable"} | {r for _, r in HOSTILE_DECODERS}
    assert built == set(checks.REJECT_REASONS)  # unreadable and the hostile decoders: tests below


def test_a_spectrogram_that_is_not_finite_is_an_error(tmp_path):
    with pytest.raises(MusictagError, match="huge.wav: the spectrogram is not finite"):
        decoding.spectrogram_of(build_huge_sample_wav(tmp_path), **FRONT_END)


def test_an_implausible_rate_is_never_resampled(tmp_path):
    with pytest.raises(MusictagError, match="rate1.wav: implausible sample rate"):
        decoding.spectrogram_of(wav_claiming_rate(1)(tmp_path), **FRONT_END)


HOSTILE_DECODERS = [  # what a decoder does on one file, and the reason check_many gives it
    (lambda: time.sleep(60), "timeout"),
    (lambda: np.ones(2**30), "out of memory"),  # 8 GB
    (lambda: os.kill(os.getpid(), signal.SIGSEGV), "crashed"),
]


def test_check_many_bounds_each_file_and_goes_on(tmp_path, monkeypatch):
    good = write(tmp_path / "good.flac")
    hostile = {str(tmp_path / f"hostile{i}.wav"): act for i, (act, _) in enumerate(HOSTILE_DECODERS)}
    check = checks._check

    def decoder(path, *args):  # runs in check_many's forked workers
        if str(path) in hostile:
            hostile[str(path)]()
        return check(path, *args)

    monkeypatch.setattr(checks, "_check", decoder)
    started = time.monotonic()
    results = checks.check_many([good, *hostile, good], workers=2, timeout_s=3, memory_limit_mb=512, **CHECKS)
    assert time.monotonic() - started < 30
    assert [r.reason for r in results] == [None, *(reason for _, reason in HOSTILE_DECODERS), None]
    assert all(r.detail for r in results[1:-1])


def test_unreadable_file(tmp_path):
    path = write(tmp_path / "locked.wav")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop root reading (see the simulated test)")
        assert checks.check_audio(path, **CHECKS).reason == "unreadable"
    finally:
        path.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """What open() raises for chmod 000 as a normal user, so the mapping is tested even as root."""
    path = write(tmp_path / "locked.wav")

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(checks, "open", denied, raising=False)  # shadows the builtin in that module only
    result = checks.check_audio(path, **CHECKS)
    assert (result.reason, result.detail) == ("unreadable", f"[Errno 13] Permission denied: '{path}'")


def test_unexpected_decoder_failure_is_undecodable_not_raised(tmp_path, monkeypatch):
    path = write(tmp_path / "song.flac")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("decoder bug")

    monkeypatch.setattr(sf, "SoundFile", broken)
    result = checks.check_audio(path, **CHECKS)
    assert result.reason == "undecodable" and "ZeroDivisionError" in result.detail


def test_truncation_detail_names_the_shortfall(tmp_path):
    result = checks.check_audio(cut(write(tmp_path / "half.flac"), 0.5), **CHECKS)
    assert result.detail.startswith("decoded ") and " of 66150 frames" in result.detail


# --- check_audio: good files --------------------------------------------------------------------------

GOOD_FILES = [  # (name, writer options, sample rate, channels)
    ("stereo.wav", dict(subtype="PCM_24"), 96000, 2),
    ("mono.flac", dict(subtype="PCM_16"), 22050, 1),
    ("song.ogg", dict(subtype="VORBIS"), 44100, 2),  # short: libvorbis overflows its stack on long writes
    pytest.param("song.mp3", dict(), 44100, 1, marks=needs_mp3),
]


@pytest.mark.parametrize("name, options, sample_rate_hz, channels", GOOD_FILES)
def test_good_file_is_kept(tmp_path, name, options, sample_rate_hz, channels):
    result = checks.check_audio(write(tmp_path / name, 3.0, sample_rate_hz, channels, **options), **CHECKS)
    assert result.ok, result
    assert (result.sample_rate_hz, result.channels) == (sample_rate_hz, channels)
    assert result.duration_s == pytest.approx(3.0, abs=0.01)


def test_thresholds_are_parameters(tmp_path):
    path = write(tmp_path / "song.flac", duration_s=3.0)
    assert checks.check_audio(path, **{**CHECKS, "min_duration_s": 5.0}).reason == "too short"
    # the chord's RMS is about -14 dBFS
    assert checks.check_audio(path, **{**CHECKS, "silence_dbfs": 0.0}).reason == "silent"


def test_check_many_keeps_input_order(tmp_path):
    paths = [write(tmp_path / "a.flac"), tmp_path / "missing.wav", write(tmp_path / "b.wav", duration_s=0.2),
             build_bytes("zeros.wav", bytes(512))(tmp_path), write(tmp_path / "c.flac")] * 3
    results = checks.check_many(paths, **{**CLEAN, "workers": 2})
    assert [r.reason for r in results] == [None, "missing", "too short", "zeroed", None] * 3


# --- the front end against plain librosa ------------------------------------------------------------------

@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A 40 s stereo FLAC (the middle is cropped) and a 10 s one (zero-padded), at 22.05 kHz."""
    folder = tmp_path_factory.mktemp("songs")
    return {d: write(folder / f"song{d}.flac", d, 22050, 2, subtype="PCM_16") for d in (40, 10)}


@pytest.mark.parametrize("duration_s", [40, 10])
def test_spectrogram_matches_librosa_algorithm1(songs, duration_s):
    expected = algorithm1_reference(songs[duration_s])
    got = decoding.spectrogram_of(songs[duration_s], **FRONT_END)
    assert got.shape == (96, 1366) and got.dtype == np.float32
    # 0.01 dB: our STFT runs in float32 (librosa's in float64), the mel product is sparse, and only the
    # window is resampled (samples agree to 4e-7). The worst bin, just above the 80 dB floor, is off by
    # ~2e-4 dB; 0.01 dB would still catch a one-sample shift (>1 dB) or a missed squaring (40 dB).
    assert np.abs(got - expected).max() <= 0.01
    if duration_s == 10:  # zero padding at the end sits on the top_db floor
        assert np.all(got[:, 480:] == got.min()) and got.min() == pytest.approx(got.max() - 80, abs=1e-3)


@pytest.mark.parametrize("square_power", [True, False])
def test_log_mel_matches_librosa_on_the_same_samples(square_power):
    y = music(29.12, 12000)[:, 0]
    S = librosa.feature.melspectrogram(y=y, sr=12000, n_fft=512, hop_length=256, n_mels=96)
    expected = librosa.power_to_db(S**2 if square_power else S, ref=1.0)
    got = frontend.log_mel(y, **{**LOG_MEL, "square_power": square_power})
    assert got.shape == (96, 1366) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 0.01  # see test_spectrogram_matches_librosa_algorithm1


@pytest.mark.parametrize("ref, amin, top_db", [(2.5, 1e-5, None), (1e-3, 1e-10, 40.0)])
def test_log_mel_scales_db_as_librosa_power_to_db(ref, amin, top_db):
    """log_mel does power_to_db in place (natural log): other ref, amin and top_db than Algorithm 1's."""
    y = music(5.0, 12000)[:, 0]
    S = librosa.feature.melspectrogram(y=y, sr=12000, n_fft=512, hop_length=256, n_mels=96)
    expected = librosa.power_to_db(S**2, ref=ref, amin=amin, top_db=top_db)
    got = frontend.log_mel(y, **{**LOG_MEL, "ref": ref, "amin": amin, "top_db": top_db})
    assert np.abs(got - expected).max() <= 0.01


def test_front_end_params_reach_log_mel_and_load_window(songs):
    wider = decoding.spectrogram_of(songs[10], **{**FRONT_END, "n_mels": 128, "hop_length": 512})
    assert wider.shape == (128, 1 + WINDOW_SAMPLES // 512)
    assert decoding.spectrogram_of(songs[10], **{**FRONT_END, "duration_s": 5.0}).shape == (96, 1 + 60000 // 256)


@pytest.mark.parametrize("changes", [{}, {"duration_s": 3.0, "n_fft": 511}, {"n_fft": 1024, "hop_length": 512,
                                                                        "n_mels": 128}])
def test_spectrogram_shape_is_what_spectrogram_of_returns(songs, changes):
    """extract lays out its chunk files from spectrogram_shape before any song is computed."""
    front_end = {**FRONT_END, **changes}
    assert frontend.spectrogram_shape(**front_end) == decoding.spectrogram_of(songs[10], **front_end).shape


@pytest.mark.parametrize("subtype, source", [("PCM_16", "_FlacSource"), ("PCM_24", "_SoundfileSource")])
def test_load_window_reads_only_the_window_of_a_long_track(tmp_path, monkeypatch, subtype, source):
    path = write(tmp_path / "five_minutes.flac", 300.0, 22050, 1, subtype=subtype)
    expected = full_decode_window(path)
    frames_read = []
    real_read = getattr(decoding, source).read

    def counting_read(self, start, stop):
        data = real_read(self, start, stop)
        frames_read.append(len(data))
        return data

    monkeypatch.setattr(getattr(decoding, source), "read", counting_read)
    got = decoding.load_window(path, **WINDOW)
    assert got.shape == (WINDOW_SAMPLES,) and got.dtype == np.float32
    # 2e-6 (~-114 dBFS): soxr on a slice rounds differently from soxr on the whole (measured <= 4e-7)
    assert np.abs(got - expected).max() <= 2e-6
    # the window, the margins, and at most one 147-sample step of the 22.05/12 kHz grid each side
    assert sum(frames_read) <= (29.12 + 2 * decoding.RESAMPLER_MARGIN_S) * 22050 + 2 * 147
    assert sum(frames_read) >= 29.12 * 22050


@pytest.mark.parametrize("channels", [1, 2])
def test_dr_flac_gives_libsndfiles_samples_bit_for_bit(tmp_path, channels):
    """16-bit FLAC goes through dr_flac: every window, seeks included, equals libsndfile's decode."""
    path = write(tmp_path / "song.flac", 20.0, 44100, channels, subtype="PCM_16")
    flac = decoding._FlacSource.open(path)
    assert isinstance(flac, decoding._FlacSource) and (flac.n_frames, flac.sample_rate_hz) == (20 * 44100, 44100)
    with sf.SoundFile(path) as file:
        libsndfile = decoding._SoundfileSource(file)
        for start, stop in [(0, flac.n_frames), (1, 4097), (123_457, 600_001), (flac.n_frames - 10, flac.n_frames)]:
            got, expected = flac.read(start, stop), libsndfile.read(start, stop)
            assert got.dtype == expected.dtype == np.float32 and got.shape == (stop - start,)
            assert np.array_equal(got, expected), (start, stop)


def test_only_16_bit_flac_goes_through_dr_flac(tmp_path):
    assert decoding._FlacSource.open(write(tmp_path / "a.flac", subtype="PCM_24")) is None
    assert decoding._FlacSource.open(write(tmp_path / "a.wav", subtype="PCM_16")) is None
    assert decoding._FlacSource.open(build_bytes("junk.flac", b"fLaC" + bytes(200))(tmp_path)) is None


def test_load_window_names_a_cut_16_bit_flac(tmp_path):
    """dr_flac stops quietly where a file is cut; load_window must not zero-pad the loss away."""
    path = cut(write(tmp_path / "cut.flac", 30.0, 16000, 1, subtype="PCM_16"), 0.5)
    with pytest.raises(MusictagError, match=r"cut.flac: cannot decode audio \(decoded \d+ of \d+ frames"):
        decoding.load_window(path, **WINDOW)


@pytest.mark.parametrize("sample_rate_hz", [8000, 11025, 12000, 16000, 44100, 48000])
def test_load_window_equals_full_decode_at_any_rate(tmp_path, sample_rate_hz):
    path = write(tmp_path / "song.wav", 12.0, sample_rate_hz, 2, subtype="FLOAT")
    got = decoding.load_window(path, **{**WINDOW, "duration_s": 5.0})
    assert np.abs(got - full_decode_window(path, n_samples=60000)).max() <= 2e-6


def test_audioread_fallback_gives_the_same_window(tmp_path, monkeypatch):
    # audioread reads PCM WAV. At 45.3 s the read starts on frame 177282, where librosa's
    # int(offset_s * sample_rate) gives 177281 unless the offset aims half a frame in.
    path = write(tmp_path / "song.wav", 45.3, 22050, 2, subtype="PCM_16")
    expected = decoding.load_window(path, **WINDOW)

    class UnknownFormat(sf.SoundFile):  # what libsndfile does with a format it lacks (m4a, say)
        def __init__(self, *args, **kwargs):
            raise sf.SoundFileRuntimeError("Format not recognised.")

        def __del__(self):
            pass

    monkeypatch.setattr(sf, "SoundFile", UnknownFormat)
    assert np.abs(decoding.load_window(path, **WINDOW) - expected).max() <= 2e-6
    result = checks.check_audio(path, **CHECKS)
    assert result.ok and (result.channels, result.sample_rate_hz) == (2, 22050)


def test_load_window_names_a_file_with_nan_samples(tmp_path):
    with pytest.raises(MusictagError, match="nan.wav: cannot decode audio"):
        decoding.load_window(build_nan_wav(tmp_path), **WINDOW)


def test_load_window_names_an_undecodable_file(tmp_path):
    path = build_bytes("junk.flac", b"fLaC" + bytes(range(256)) * 40)(tmp_path)
    with pytest.raises(MusictagError, match="junk.flac: cannot decode audio"):
        decoding.load_window(path, **WINDOW)


def test_a_kept_check_holds_the_audio_librosa_loads(songs):
    checked = checks.check_audio(songs[10], **CHECKS, keep_at_hz=12000)
    expected, _ = librosa.load(songs[10], sr=12000)
    assert checked.ok and checked.sample_rate_hz != 12000  # resampled as it was decoded
    np.testing.assert_array_equal(checked.audio, expected)
    assert checks.check_audio(songs[10], **CHECKS).audio is None  # not kept unless asked
    windows = frontend.song_spectrograms(checked.audio, **FRONT_END)
    assert windows.shape == (1, 96, 1366)  # a 10 s song: one window, zero-padded
    np.testing.assert_array_equal(windows[0], frontend.log_mel(librosa.util.fix_length(expected, size=WINDOW_SAMPLES),
                                                            **LOG_MEL))


def quiet_passages_mp3(path, duration_s: float, sample_rate_hz: int = 22050):
    """Tones with digital silence between them, as MP3: where libsndfile's MPEG decoding depends on how
    it is read (decoding._ONE_READ_FORMATS)."""
    t = np.arange(round(1.5 * sample_rate_hz)) / sample_rate_hz
    silence = np.zeros(round(0.5 * sample_rate_hz))
    tones = [part for i in range(math.ceil(duration_s / 2))
             for part in (0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t), silence)]
    mono = np.concatenate(tones)[:round(duration_s * sample_rate_hz)].astype(np.float32)
    sf.write(path, np.stack([mono, 0.8 * mono], axis=1), sample_rate_hz, format="MP3")
    return path


@needs_mp3
def test_an_mp3_with_quiet_passages_decodes_as_librosa_loads_it(tmp_path):
    path = quiet_passages_mp3(tmp_path / "gaps.mp3", duration_s=40)
    whole, _ = sf.read(path, dtype="float32")
    with sf.SoundFile(path) as file:
        in_blocks = np.concatenate([file.read(8192, dtype="float32") for _ in range(0, len(whole), 8192)])
    assert np.abs(in_blocks - whole).max() > 0.01  # the libsndfile behaviour this guards against is there
    expected, _ = librosa.load(path, sr=12000)
    np.testing.assert_array_equal(checks.check_audio(path, **CHECKS, keep_at_hz=12000).audio, expected)
    assert np.abs(decoding.load_window(path, **WINDOW) - full_decode_window(path)).max() <= 2e-6
    verdict, spectrogram = checks.check_window(path, **CHECKS, **FRONT_END)
    assert verdict.ok and np.abs(spectrogram - algorithm1_reference(path)).max() <= 0.01
