"""The embedded corpus: real audio of the right length, tags from real metadata and analysis."""
import shutil

import numpy as np
import pytest
import soundfile
from conftest import SOUNDFONT

from musictag.datasets import corpus
from musictag.errors import MusictagError
from musictag.params import defaults


def test_clips_are_29_12_s_non_silent_flac(tiny_corpus):
    manifest, audio_dir = tiny_corpus
    assert len(manifest) == 8
    for path in manifest.clips["audio_path"]:
        info = soundfile.info(path)
        assert info.format == "FLAC" and info.samplerate == 16000 and info.channels == 1
        assert abs(info.frames / info.samplerate - 29.12) <= 0.010
    report = corpus.audio_report(list(manifest.clips["audio_path"]))
    assert report["min_rms_dbfs"] > -60
    assert sorted(p.name for p in audio_dir.iterdir()) == sorted(f"{i}.flac" for i in manifest.clips["id"])
    assert (manifest.clips["soundfont"] == SOUNDFONT).all()  # recorded per clip, kept by the manifest


def test_every_clip_has_era_texture_and_instrument_tags(tiny_corpus):
    manifest, _ = tiny_corpus
    assert manifest.tag_names == corpus.TAG_NAMES
    assert 25 <= len(manifest.tag_names) <= 50
    targets = manifest.targets.astype(bool)
    for group in (corpus.ERAS, corpus.MODES, corpus.TEMPI, corpus.TEXTURES, list(corpus.INSTRUMENT_PROGRAMS)):
        columns = [manifest.tag_names.index(t) for t in group]
        assert targets[:, columns].any(axis=1).all(), group
    exclusive = [corpus.ERAS, corpus.MODES, corpus.TEMPI, corpus.TEXTURES]
    for group in exclusive:
        columns = [manifest.tag_names.index(t) for t in group]
        assert (targets[:, columns].sum(axis=1) == 1).all(), group


def test_artist_and_splits(tiny_corpus):
    manifest, _ = tiny_corpus
    clips = manifest.clips
    assert set(clips["split"]) == {"train", "valid", "test"}
    assert (clips["artist"] != "").all() and (clips["title"] != "").all()
    bach = clips[clips["id"].str.startswith("bach-")]
    assert (bach["artist"] == "J.S. Bach").all()


def test_work_groups_never_span_two_splits():
    works = corpus.list_works()
    by_id = {w.clip_id: w for w in works}
    assert len(by_id) == len(works) > 10_000
    quartet = [w for w in works if w.source_path.startswith("beethoven/opus18no1/")]
    assert len(quartet) >= 2 and len({w.group for w in quartet}) == 1
    mass = [w for w in works if w.collection == "palestrina" and w.source_path.endswith("_42.krn")]
    assert len(mass) >= 2 and len({w.group for w in mass}) == 1


def test_interleaved_order_is_seeded_and_balanced():
    works = corpus.list_works()
    first = corpus.interleave_by_collection(works, seed=1)
    assert first == corpus.interleave_by_collection(works, seed=1)
    assert first != corpus.interleave_by_collection(works, seed=2)
    head = [w.collection for w in first[:200]]
    assert head.count("essenFolksong") < 20  # 8,500 folk songs do not swamp the rest


def _render(work, folder, soundfonts, timbre_variation=False):
    folder.mkdir()
    row = corpus.render_work(work, 3, 12000, 5.0, str(folder), tuple(soundfonts), timbre_variation)
    return row, soundfile.read(folder / f"{work.clip_id}.flac")[0]


def test_render_is_deterministic_per_clip(tmp_path):
    work = next(w for w in corpus.list_works() if w.clip_id == "bach-bwv389")
    soundfont = corpus.find_soundfont(SOUNDFONT, "test")
    row_a, audio_a = _render(work, tmp_path / "a", [soundfont])
    row_b, audio_b = _render(work, tmp_path / "b", [soundfont])
    assert row_a == row_b and row_a["soundfont"] == SOUNDFONT
    np.testing.assert_array_equal(audio_a, audio_b)
    assert {"baroque", "chorale", "four voices"} <= set(row_a["tags"])


def test_the_soundfont_draw_changes_nothing_else_about_a_clip(tmp_path):
    """Two soundfonts with the same samples under two names: every clip is the same audio whichever it
    draws, so the draw took nothing from the stream of the window, tempo, instruments and velocities; and
    the draws use both."""
    same = corpus.find_soundfont(SOUNDFONT, "test")
    twin = tmp_path / "Twin.sf2"
    shutil.copyfile(same, twin)
    works = [w for w in corpus.list_works() if w.collection == "bach"][:6]
    drawn = set()
    for work in works:
        row_one, audio_one = _render(work, tmp_path / f"{work.clip_id}-one", [same])
        row_two, audio_two = _render(work, tmp_path / f"{work.clip_id}-two", [same, twin])
        np.testing.assert_array_equal(audio_one, audio_two)
        assert {k: v for k, v in row_one.items() if k != "soundfont"} == \
            {k: v for k, v in row_two.items() if k != "soundfont"}
        drawn.add(row_two["soundfont"])
    assert drawn == {SOUNDFONT, "Twin.sf2"}


def test_timbre_variation_changes_the_sound_not_the_music(tmp_path):
    """A varied clip is the same notes, tags and soundfont, rendered another way (and the same way twice)."""
    work = next(w for w in corpus.list_works() if w.clip_id == "bach-bwv389")
    soundfont = corpus.find_soundfont(SOUNDFONT, "test")
    row_plain, plain = _render(work, tmp_path / "plain", [soundfont])
    row_varied, varied = _render(work, tmp_path / "varied", [soundfont], timbre_variation=True)
    _, again = _render(work, tmp_path / "again", [soundfont], timbre_variation=True)
    assert row_plain == row_varied
    np.testing.assert_array_equal(varied, again)
    assert len(varied) == len(plain) and np.isfinite(varied).all()
    variation = corpus.vary_timbre(3, work.clip_id)
    assert 20 * np.log10(np.abs(varied).max()) == pytest.approx(variation.peak_dbfs, abs=0.01)  # 16-bit FLAC
    assert np.corrcoef(plain, varied)[0, 1] < 0.99  # another sound: detuned, in a room, tilted


def test_held_out_and_missing_soundfonts_are_one_line_errors(tmp_path):
    options = {**defaults("data")["embedded"], "n_clips": 3, "audio_dir": str(tmp_path / "a")}
    with pytest.raises(MusictagError, match=r"data\.embedded\.soundfonts: FluidR3_GM\.sf2 is held out of training"):
        corpus.build_corpus(**{**options, "soundfonts": [SOUNDFONT, "FluidR3_GM.sf2"]})
    with pytest.raises(MusictagError, match=r"data\.embedded\.soundfonts: soundfont Nowhere\.sf2 not found "
                                            r"\(give its path, or list only the soundfonts you have\)"):
        corpus.build_corpus(**{**options, "soundfonts": ["Nowhere.sf2"]})
    assert "install Debian's opl3-soundfont" in str(pytest.raises(
        MusictagError, corpus.find_soundfont, "/nowhere/OPL-3_FM_128M.sf2", "shift.soundfonts").value)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("pitches, expected", [
    ([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], "major"),   # C major scale and triad
    ([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57], "minor"),   # A harmonic minor
])
def test_mode_from_key_analysis(pitches, expected):
    notes = np.array([[i * 0.5, 0.5, p, 0] for i, p in enumerate(pitches)], dtype=float)
    assert corpus.mode_of(notes) == expected


def test_meter_tempo_and_texture_classes():
    from music21 import meter, stream

    def score_in(signature):
        s = stream.Score()
        part = stream.Part()
        part.append(meter.TimeSignature(signature))
        s.insert(0, part)
        return s

    assert corpus.meter_of(score_in("6/8")) == "compound meter"
    assert corpus.meter_of(score_in("3/4")) == "triple meter"
    assert corpus.meter_of(score_in("2/2")) == "duple meter"
    assert corpus.meter_of(score_in("5/4")) is None
    assert [corpus.tempo_class(q) for q in (60, 100, 140)] == ["slow", "moderate", "fast"]
    assert [corpus.texture_of(n) for n in (1, 3, 4, 6)] == corpus.TEXTURES


def test_short_tunes_repeat_and_long_works_are_windowed():
    rng = np.random.default_rng(0)
    tune = np.array([[0, 1, 60, 0], [1, 1, 62, 0], [2, 2, 64, 0]], dtype=float)  # 4 quarters
    looped = corpus.excerpt(tune, 4.0, qpm=120, clip_duration_s=10.0, rng=rng)  # 2 s tune -> 5 times
    assert len(looped) == 15 and looped[:, 0].max() < 10.0
    long_piece = np.array([[q, 1, 60 + q % 12, 0] for q in range(400)], dtype=float)
    window = corpus.excerpt(long_piece, 400.0, qpm=60, clip_duration_s=10.0, rng=rng)
    assert len(window) == 10 and window[:, 0].min() >= 0 and (window[:, 0] + window[:, 1]).max() <= 10.0


def test_more_clips_than_works_fail_before_any_work(tmp_path):
    options = {**defaults("data")["embedded"], "n_clips": 10**6, "audio_dir": str(tmp_path / "a"),
               "soundfonts": [SOUNDFONT]}
    with pytest.raises(MusictagError, match=r"data\.embedded\.n_clips: at most \d+ works are available"):
        corpus.build_corpus(**options)
    assert not (tmp_path / "a").exists()
