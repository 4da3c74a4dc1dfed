"""The embedded default catalogue: real scores from music21's corpus, rendered to real audio.

MSD audio cannot be shipped, so a fresh clone builds its own catalogue from PyPI packages alone:
the ~15,000 works indexed by music21's core corpus (Bach chorales, Palestrina masses, Monteverdi
madrigals, Trecento pieces, Essen folk songs, O'Neill and Ryan fiddle tunes, Aird's airs, Haydn,
Mozart and Beethoven quartets, ...) are rendered with the General MIDI soundfonts listed in
`data.embedded.soundfonts` through tinysoundfont, one clip of `clip_duration_s` per work, each clip's
soundfont drawn from a seeded stream of its own (so the list changes nothing else about a clip).
FluidR3 and every bank built from its samples are held out of training: the `shift` stage renders the
test split again with them (musictag.evaluation.shift).

Every tag comes from metadata or from analysis of the rendered excerpt, never invented:
  era, form, origin and dance type  <- the collection, title and locale metadata of the score
  mode                              <- Krumhansl-Schmuckler key analysis of the notes heard
  meter                             <- the score's time signature
  tempo class                       <- the playback tempo (the score's metronome mark, else a seeded draw)
  texture                           <- how many voices sound in the excerpt
  instruments                       <- the GM programs actually used, drawn per clip by a seeded policy
                                       that ignores the collection, so instrument is no proxy for genre.
artist = composer or collection, title = the work; a work never spans two splits.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal
import soundfile
from tqdm import tqdm

from musictag.datasets.manifest import Manifest, grouped_split
from musictag.errors import MusictagError
from musictag.files import replace_dir, write_atomic

ERAS = ["medieval", "renaissance", "baroque", "classical", "romantic", "folk"]
FORMS = ["chorale", "mass", "madrigal", "fiddle tune", "folk song", "air", "string quartet"]
DANCES = ["jig", "reel", "hornpipe"]
ORIGINS = ["german", "chinese", "irish", "scottish", "american"]
MODES = ["major", "minor"]
METERS = ["duple meter", "triple meter", "compound meter"]
TEMPI = ["slow", "moderate", "fast"]
TEXTURES = ["one voice", "two or three voices", "four voices", "five or more voices"]
# tag -> General MIDI program (0-based). Channel 10 (drums) is never used.
INSTRUMENT_PROGRAMS = {
    "piano": 0, "harpsichord": 6, "organ": 19, "accordion": 21, "guitar": 24, "violin": 40,
    "cello": 42, "strings": 48, "choir": 52, "trumpet": 56, "clarinet": 71, "flute": 73,
}
TAG_NAMES = ERAS + FORMS + DANCES + ORIGINS + MODES + METERS + TEMPI + TEXTURES + list(INSTRUMENT_PROGRAMS)

MASS_MOVEMENTS = re.compile(r"\b(kyrie|gloria|credo|sanctus|benedictus|agnus)\b", re.IGNORECASE)
MIN_NOTES_PER_CLIP = 4
SILENCE_RMS = 1e-4
PEAK_AFTER_NORMALISATION = 0.89  # -1 dBFS
DRUM_CHANNEL = 9
SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/soundfonts"), Path("/usr/share/sounds/sf3"))
SOUNDFONT_PACKAGES = {  # file name -> the Debian package that installs it (`make soundfonts`)
    "TimGM6mb.sf2": "timgm6mb-soundfont (or pretty_midi's copy)", "sf_GMbank.sf2": "csound-soundfont",
    "OPL-3_FM_128M.sf2": "opl3-soundfont", "FluidR3_GM.sf2": "fluid-soundfont-gm",
}
HELD_OUT = re.compile(r"fluid|musescore", re.IGNORECASE)  # FluidR3, FluidR3Mono, MuseScore General: FluidR3 samples
PARAM = "data.embedded"  # where this adapter's options live in params.yaml, for error messages


@dataclass(frozen=True)
class Collection:
    """What music21's corpus folder tells about every work in it."""

    artist: str | None  # None: take the composer from each score's metadata
    era: str
    form: str | None = None
    origin: str | None = None
    work_pattern: str | None = None  # regex on the file stem whose group(1) names the work


COLLECTIONS = {
    "trecento": Collection(None, "medieval"),
    "ciconia": Collection("Johannes Ciconia", "medieval"),
    "luca": Collection("Codex of Lucca", "medieval"),
    "palestrina": Collection("Palestrina", "renaissance", "mass", work_pattern=r"_(\d+)"),
    "josquin": Collection("Josquin des Prez", "renaissance"),
    "lusitano": Collection("Vicente Lusitano", "renaissance"),
    "monteverdi": Collection("Claudio Monteverdi", "renaissance", "madrigal"),
    "bach": Collection("J.S. Bach", "baroque", "chorale", work_pattern=r"^(bwv\d+)"),
    "handel": Collection("G.F. Handel", "baroque"),
    "corelli": Collection("Arcangelo Corelli", "baroque"),
    "cpebach": Collection("C.P.E. Bach", "classical"),
    "haydn": Collection("Joseph Haydn", "classical", "string quartet"),
    "mozart": Collection("W.A. Mozart", "classical", "string quartet"),
    "beethoven": Collection("Ludwig van Beethoven", "classical", "string quartet"),
    "schubert": Collection("Franz Schubert", "romantic"),
    "weber": Collection("Carl Maria von Weber", "romantic"),
    "chopin": Collection("Frederic Chopin", "romantic"),
    "schumann_robert": Collection("Robert Schumann", "romantic"),
    "schumann_clara": Collection("Clara Schumann", "romantic"),
    "verdi": Collection("Giuseppe Verdi", "romantic"),
    "essenFolksong": Collection("Essen Folksong Collection", "folk", "folk song"),
    "miscFolk": Collection("Folk tune books", "folk", "folk song"),
    "ryansMammoth": Collection("Ryan's Mammoth Collection", "folk", "fiddle tune", "american"),
    "oneills1850": Collection("O'Neill's Music of Ireland", "folk", "fiddle tune", "irish"),
    "airdsAirs": Collection("Aird's Airs", "folk", "air", "scottish"),
}
SCORE_SUFFIX = re.compile(r"\.(mxl|xml|musicxml|krn|abc)$")  # not .rntxt: analyses, not scores


@dataclass(frozen=True)
class Work:
    """One candidate score of the music21 corpus."""

    clip_id: str
    source_path: str  # relative to music21's corpus root
    number: int | None  # tune number inside an opus file (ABC), else None
    collection: str
    title: str
    composer: str | None
    locale: str | None
    group: str  # the work a clip belongs to, for grouped splits


def find_soundfont(name: str, param: str) -> Path:
    """The soundfont `name`: a path to the file, or a file name found in pretty_midi's wheel (TimGM6mb.sf2)
    or else the system's soundfont folders (SOUNDFONT_DIRS); a one-line error naming `param` and the package
    that installs it otherwise. The wheel comes first: its pinned TimGM6mb differs from Debian's, and one
    name must mean the same bytes on every machine."""
    import pretty_midi

    path = Path(name).expanduser()
    candidates = [path] if path.name != name else [Path(pretty_midi.__file__).parent / name,
                                                    *(d / name for d in SOUNDFONT_DIRS)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    package = SOUNDFONT_PACKAGES.get(path.name)
    how = f"install Debian's {package} (`make soundfonts`)" if package else "give its path"
    raise MusictagError(f"{param}: soundfont {name} not found ({how}, or list only the soundfonts you have)")


def soundfont_digests(names: list[str]) -> dict[str, str]:
    """Each soundfont's MD5, by name: the files live outside the repository (pretty_midi's wheel, Debian's
    packages), so DVC cannot track them; metrics/dataset_details.json shows when one changes under its name."""
    digests = {}
    for name in names:
        with open(find_soundfont(name, f"{PARAM}.soundfonts"), "rb") as file:
            digests[name] = hashlib.file_digest(file, "md5").hexdigest()
    return digests


def training_soundfonts(names: list[str]) -> tuple[Path, ...]:
    """The soundfonts of `data.embedded.soundfonts`, found; a held-out bank (FluidR3 or one built from its
    samples) is refused, so the held-out timbre never enters training."""
    if not names:
        raise MusictagError(f"{PARAM}.soundfonts: list at least one soundfont")
    held_out = [name for name in names if HELD_OUT.search(Path(name).name)]
    if held_out:
        raise MusictagError(f"{PARAM}.soundfonts: {held_out[0]} is held out of training (FluidR3 samples): "
                            f"the shift stage tests on it")
    return tuple(find_soundfont(name, f"{PARAM}.soundfonts") for name in names)


def list_works() -> list[Work]:
    """Candidate works from music21's metadata bundle: no score is parsed here (about 2 s)."""
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    entries = [e for e in bundle[:] if e.metadata is not None]  # one slice: iterating it is quadratic
    numbered_files = {str(e.sourcePath) for e in entries if e.number is not None}
    works, seen_ids = [], set()
    for entry in sorted(entries, key=lambda e: (str(e.sourcePath), int(e.number or 0))):
        source_path = str(entry.sourcePath)
        collection = source_path.split("/")[0]
        if collection not in COLLECTIONS or not SCORE_SUFFIX.search(source_path):
            continue
        if entry.number is None and source_path in numbered_files:
            continue  # the whole-opus entry of a file whose tunes are listed one by one
        number = int(entry.number) if entry.number is not None else None
        stem = SCORE_SUFFIX.sub("", source_path)
        clip_id = re.sub(r"[^A-Za-z0-9]+", "-", stem + (f"-{number}" if number is not None else "")).strip("-")
        if clip_id in seen_ids:  # the same score in a second format (.krn beside .mxl)
            continue
        seen_ids.add(clip_id)
        md = entry.metadata
        title = md.title or md.movementName or Path(source_path).stem
        title = SCORE_SUFFIX.sub("", str(title))  # movementName is often the file name
        if number is not None:
            title = md.title or f"{Path(source_path).stem} no. {number}"
        works.append(Work(
            clip_id=clip_id, source_path=source_path, number=number, collection=collection,
            title=str(title), composer=md.composer, locale=md.localeOfComposition,
            group=_work_group(source_path, number, COLLECTIONS[collection]),
        ))
    return works


def _work_group(source_path: str, number: int | None, collection: Collection) -> str:
    """The work a score belongs to: a quartet's movements or a mass's sections share one group."""
    parts = source_path.split("/")
    if len(parts) > 2:  # e.g. beethoven/opus18no1/movement3.mxl
        return "/".join(parts[:-1])
    stem = Path(source_path).stem
    if collection.work_pattern:
        match = re.search(collection.work_pattern, stem)
        if match:
            return f"{parts[0]}/{match.group(1)}"
    return source_path + (f"#{number}" if number is not None else "")


def interleave_by_collection(works: list[Work], seed: int) -> list[Work]:
    """Seeded order that takes one work from each collection in turn.

    Essen's 8,500 songs would otherwise swamp Haydn's 9 movements; and a larger corpus is a
    superset of a smaller one with the same seed.
    """
    rng = np.random.default_rng(seed)
    by_collection: dict[str, list[Work]] = {}
    for work in sorted(works, key=lambda w: w.clip_id):
        by_collection.setdefault(work.collection, []).append(work)
    queues = []
    for name in sorted(by_collection):
        items = by_collection[name]
        queues.append([items[i] for i in rng.permutation(len(items))])
    order = []
    for rank in range(max(len(q) for q in queues)):
        order.extend(q[rank] for q in queues if rank < len(q))
    return order


def clip_rng(seed: int, clip_id: str, stream: str = "") -> np.random.Generator:
    """A generator per clip, so a clip renders the same whatever else is in the corpus; a named `stream`
    (the soundfont draw) is independent of the clip's main one, so adding a draw there changes no other."""
    key = f"{seed}:{clip_id}" + (f":{stream}" if stream else "")
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class TimbreVariation:
    """How one clip departs from its soundfont's plain sound, as players, instruments and rooms differ:
    each channel detuned, a room, the mix's spectral tilt, and the peak level (`vary_timbre`)."""

    detune_cents: tuple[float, ...]  # per MIDI channel
    reverb_s: float  # RT60 of the room: exponentially decaying noise
    reverb_mix: float  # the wet share
    tilt_db_per_octave: float  # around 1 kHz
    peak_dbfs: float  # the clip's peak after normalisation


DETUNE_CENTS = 8.0  # within a few cents, as an ensemble plays
REVERB_S, REVERB_MIX = (0.2, 2.0), (0.0, 0.4)  # from a dry studio to a church
TILT_DB_PER_OCTAVE = 2.0  # a dull to a bright microphone or instrument
PEAK_DBFS = (-12.0, -1.0)


def vary_timbre(seed: int, clip_id: str) -> TimbreVariation:
    """The clip's timbre variation, drawn uniformly within the ranges above from a stream of its own, so
    no other draw of the clip changes."""
    rng = clip_rng(seed, clip_id, "timbre")
    return TimbreVariation(tuple(float(c) for c in rng.uniform(-DETUNE_CENTS, DETUNE_CENTS, 16)),
                           float(rng.uniform(*REVERB_S)), float(rng.uniform(*REVERB_MIX)),
                           float(rng.uniform(-TILT_DB_PER_OCTAVE, TILT_DB_PER_OCTAVE)), float(rng.uniform(*PEAK_DBFS)))


def room_and_tilt(audio: np.ndarray, sample_rate_hz: int, variation: TimbreVariation, seed: int,
                  clip_id: str) -> np.ndarray:
    """`audio` in a room (dry plus `reverb_mix` of it convolved with decaying noise of RT60 `reverb_s`, the
    noise drawn from the clip's own stream) through a spectral tilt of `tilt_db_per_octave` around 1 kHz,
    at the same length."""
    n_room = max(1, int(variation.reverb_s * sample_rate_hz))
    room = clip_rng(seed, clip_id, "room").standard_normal(n_room) * 10 ** (-3 * np.arange(n_room) / n_room)
    wet = scipy.signal.fftconvolve(audio, room / np.sqrt(np.sum(room**2)))[: len(audio)]
    mixed = (1 - variation.reverb_mix) * audio + variation.reverb_mix * wet
    octaves = np.log2(np.maximum(np.fft.rfftfreq(len(mixed), 1 / sample_rate_hz), 20.0) / 1000.0)
    tilted = np.fft.rfft(mixed) * 10 ** (variation.tilt_db_per_octave * octaves / 20)
    return np.fft.irfft(tilted, len(mixed)).astype(np.float32)


def choose_soundfont(seed: int, clip_id: str, soundfonts: tuple[Path, ...]) -> Path:
    """The clip's soundfont, uniform over `soundfonts`, from its own stream."""
    return soundfonts[int(clip_rng(seed, clip_id, "soundfont").integers(len(soundfonts)))]


def score_notes(score) -> np.ndarray:
    """Every sounding note of a music21 score as rows (onset_ql, duration_ql, midi_pitch, part).

    Tied notes sound once: a tie's continuation extends the open note of that pitch (music21's
    stripTies does the same but is quadratic on long movements).
    """
    rows: list[list[float]] = []
    for part_index, part in enumerate(score.parts):
        open_rows: dict[int, int] = {}  # midi pitch -> row of the tied note still sounding
        for element in part.flatten().notes:
            duration_ql = float(element.duration.quarterLength)
            if duration_ql <= 0:  # grace notes
                continue
            onset_ql = float(element.offset)
            for pitch in element.pitches:
                tie = element.getTie(pitch) if element.isChord else element.tie
                tie_type = tie.type if tie is not None else None
                if tie_type in ("continue", "stop") and pitch.midi in open_rows:
                    row = rows[open_rows[pitch.midi]]
                    row[1] = onset_ql + duration_ql - row[0]
                    if tie_type == "stop":
                        del open_rows[pitch.midi]
                    continue
                rows.append([onset_ql, duration_ql, pitch.midi, part_index])
                if tie_type == "start":
                    open_rows[pitch.midi] = len(rows) - 1
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def playback_tempo_qpm(score, rng: np.random.Generator) -> float:
    """Quarter notes per minute: the score's first metronome mark, else a seeded draw in 56-152."""
    for mark in score.recurse().getElementsByClass("MetronomeMark"):
        if mark.number is not None and 20 <= mark.getQuarterBPM() <= 400:
            return float(mark.getQuarterBPM())
    return float(rng.uniform(56, 152))


def excerpt(notes_ql: np.ndarray, length_ql: float, qpm: float, clip_duration_s: float,
            rng: np.random.Generator) -> np.ndarray:
    """Notes of one clip in seconds, rows (onset_s, duration_s, pitch, part).

    Works longer than the clip give a seeded window; shorter ones repeat, as folk tunes are played.
    """
    seconds_per_ql = 60.0 / qpm
    notes = notes_ql.copy()
    notes[:, :2] *= seconds_per_ql
    piece_s = max(length_ql * seconds_per_ql, 1e-3)
    if piece_s >= clip_duration_s:
        start_s = float(rng.uniform(0, piece_s - clip_duration_s))
    else:
        repeats = math.ceil(clip_duration_s / piece_s)
        notes = np.concatenate([notes + [k * piece_s, 0, 0, 0] for k in range(repeats)])
        start_s = 0.0
    notes[:, 0] -= start_s
    keep = (notes[:, 0] >= 0) & (notes[:, 0] < clip_duration_s)
    notes = notes[keep]
    notes[:, 1] = np.minimum(notes[:, 1], clip_duration_s - notes[:, 0])
    return notes


def render(notes_s: np.ndarray, programs: list[int], sample_rate_hz: int, n_samples: int,
           rng: np.random.Generator, soundfont: Path, detune_cents: tuple[float, ...] | None = None) -> np.ndarray:
    """Mono float32 audio of the notes, synthesised with the GM `soundfont` (one channel per part, channel c
    detuned by `detune_cents[c]` where given). A fresh synthesiser every clip: one reused keeps voices and
    modulators that change the next clip's samples."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate_hz)
    font = synth.sfload(str(soundfont))
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for part, program in enumerate(programs):
        synth.program_select(channels[part], font, 0, program)
        if detune_cents is not None:  # the pitch wheel spans +-2 semitones (8192 steps each way)
            synth.pitchbend(channels[part], 8192 + round(detune_cents[channels[part]] / 200 * 8192))
    velocities = rng.integers(64, 110, size=len(notes_s))
    events = []  # (sample, is_on, channel, pitch, velocity); note-offs sort before note-ons
    for (onset_s, duration_s, pitch, part), velocity in zip(notes_s, velocities):
        start = int(round(onset_s * sample_rate_hz))
        stop = max(start + 1, int(round((onset_s + duration_s) * sample_rate_hz)))
        events.append((start, 1, channels[int(part)], int(pitch), int(velocity)))
        events.append((stop, 0, channels[int(part)], int(pitch), 0))
    events.sort()
    stereo = np.zeros((n_samples, 2), dtype=np.float32)
    position = 0
    for sample, is_on, channel, pitch, velocity in events:
        sample = min(sample, n_samples)
        if sample > position:
            block = synth.generate(sample - position)
            stereo[position:sample] = np.frombuffer(block, dtype=np.float32).reshape(-1, 2)
            position = sample
        if is_on:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    if position < n_samples:
        stereo[position:] = np.frombuffer(synth.generate(n_samples - position), dtype=np.float32).reshape(-1, 2)
    return stereo.mean(axis=1)


def choose_programs(n_parts: int, rng: np.random.Generator) -> list[int]:
    """Seeded instrumentation, blind to the collection: one timbre for all parts, or one per part."""
    names = list(INSTRUMENT_PROGRAMS)
    if n_parts == 1 or rng.random() < 0.5:
        return [INSTRUMENT_PROGRAMS[names[rng.integers(len(names))]]] * n_parts
    return [INSTRUMENT_PROGRAMS[names[i]] for i in rng.integers(len(names), size=n_parts)]


def mode_of(notes_s: np.ndarray) -> str:
    """'major' or 'minor' by Krumhansl-Schmuckler key finding on the notes heard.

    The duration-weighted pitch-class histogram is correlated with music21's Krumhansl-Kessler
    profiles in all 12 transpositions; the best of the 24 keys gives the mode.
    """
    from music21.analysis.discrete import KrumhanslSchmuckler

    histogram = np.bincount(notes_s[:, 2].astype(int) % 12, weights=notes_s[:, 1], minlength=12)
    profiles = KrumhanslSchmuckler()
    best = {}
    for mode in MODES:
        weights = np.array(profiles.getWeights(mode))
        rotations = np.stack([np.roll(weights, tonic) for tonic in range(12)])
        best[mode] = max(np.corrcoef(histogram, rotation)[0, 1] for rotation in rotations)
    return max(MODES, key=lambda mode: best[mode])


def meter_of(score) -> str | None:
    """Duple, triple or compound from the first time signature (None for 5/4, 7/8 or none)."""
    signatures = list(score.recurse().getElementsByClass("TimeSignature"))
    if not signatures:
        return None
    numerator, denominator = signatures[0].numerator, signatures[0].denominator
    if numerator in (6, 9, 12) and denominator >= 8:
        return "compound meter"
    if numerator == 3:
        return "triple meter"
    if numerator in (2, 4):
        return "duple meter"
    return None


def tempo_class(qpm: float) -> str:
    return "slow" if qpm < 80 else "moderate" if qpm < 120 else "fast"


def texture_of(n_voices: int) -> str:
    if n_voices <= 1:
        return "one voice"
    if n_voices <= 3:
        return "two or three voices"
    return "four voices" if n_voices == 4 else "five or more voices"


def metadata_tags(work: Work) -> set[str]:
    """Era, form, origin and dance type, from the collection, title and locale of the score."""
    collection = COLLECTIONS[work.collection]
    tags = {collection.era}
    if MASS_MOVEMENTS.search(work.title) or collection.form == "mass":
        tags.add("mass")
    elif collection.form:
        tags.add(collection.form)
    origin = collection.origin
    if work.locale and "China" in work.locale:
        origin = "chinese"
    elif work.locale and "Deutschland" in work.locale:
        origin = "german"
    if origin:
        tags.add(origin)
    tags.update(d for d in DANCES if re.search(rf"\b{d}s?\b", work.title, re.IGNORECASE))
    return tags


def render_work(work: Work, seed: int, sample_rate_hz: int, clip_duration_s: float, audio_dir: str,
                soundfonts: tuple[Path, ...], timbre_variation: bool) -> dict | str:
    """Parse, excerpt, render with one of `soundfonts` (`choose_soundfont`), with the clip's
    `vary_timbre` if `timbre_variation`, analyse and write one clip. Returns its manifest row, or why it
    was skipped."""
    from music21 import corpus

    rng = clip_rng(seed, work.clip_id)
    try:
        score = corpus.parse(work.source_path, number=work.number)
        if not hasattr(score, "parts") or len(score.parts) == 0:
            return f"{work.source_path}: no parts"
        notes_ql = score_notes(score)
        qpm = playback_tempo_qpm(score, rng)
        meter = meter_of(score)
        length_ql = float(score.highestTime)
    except Exception as err:  # a score music21 cannot read is skipped, with its reason
        return f"{work.source_path}: unreadable ({err.__class__.__name__})"
    n_parts = int(notes_ql[:, 3].max()) + 1 if len(notes_ql) else 0
    if n_parts == 0 or n_parts > 15:
        return f"{work.source_path}: {n_parts} parts (need 1-15)"
    notes_s = excerpt(notes_ql, length_ql, qpm, clip_duration_s, rng)
    if len(notes_s) < MIN_NOTES_PER_CLIP:
        return f"{work.source_path}: only {len(notes_s)} notes in the excerpt"
    programs = choose_programs(n_parts, rng)
    n_samples = int(round(clip_duration_s * sample_rate_hz))
    soundfont = choose_soundfont(seed, work.clip_id, soundfonts)
    variation = vary_timbre(seed, work.clip_id) if timbre_variation else None
    audio = render(notes_s, programs, sample_rate_hz, n_samples, rng, soundfont,
                   variation.detune_cents if variation else None)
    rms = float(np.sqrt(np.mean(audio**2)))
    if rms < SILENCE_RMS:
        return f"{work.source_path}: silent render"
    if variation:
        audio = room_and_tilt(audio, sample_rate_hz, variation, seed, work.clip_id)
    peak = 10 ** (variation.peak_dbfs / 20) if variation else PEAK_AFTER_NORMALISATION
    audio *= peak / float(np.max(np.abs(audio)))

    path = Path(audio_dir) / f"{work.clip_id}.flac"
    write_atomic(path, lambda tmp: soundfile.write(tmp, audio, sample_rate_hz, subtype="PCM_16"))

    tags = metadata_tags(work)
    tags.add(mode_of(notes_s))
    tags.add(tempo_class(qpm))
    tags.add(texture_of(len(set(notes_s[:, 3].astype(int)))))
    if meter:
        tags.add(meter)
    names_by_program = {p: n for n, p in INSTRUMENT_PROGRAMS.items()}
    tags.update(names_by_program[programs[int(p)]] for p in set(notes_s[:, 3]))
    artist = COLLECTIONS[work.collection].artist or work.composer or work.collection
    return {"id": work.clip_id, "file": path.name, "artist": artist, "title": work.title,
            "group": work.group, "tags": sorted(tags), "soundfont": soundfont.name}


def audio_report(audio_paths: list[Path]) -> dict:
    """Read every clip back: shortest and longest duration and the quietest clip's RMS level."""
    durations_s, rms_dbfs = [], []
    for path in audio_paths:
        audio, sample_rate_hz = soundfile.read(path, dtype="float32")
        durations_s.append(len(audio) / sample_rate_hz)
        rms_dbfs.append(20 * np.log10(max(float(np.sqrt(np.mean(audio**2))), 1e-12)))
    return {"min_duration_s": round(min(durations_s), 4), "max_duration_s": round(max(durations_s), 4),
            "min_rms_dbfs": round(min(rms_dbfs), 1)}


def _render_star(args):
    return render_work(*args)


def rendered(works: list[Work], seed: int, sample_rate_hz: int, clip_duration_s: float, audio_dir: Path,
             soundfonts: tuple[Path, ...], timbre_variation: bool, workers: int) -> Iterator[dict | str]:
    """`render_work` of every work, in order, by `workers` processes (0 = all cores); the caller may stop
    early (the workers are stopped). Rendering is seeded per clip, so which worker renders what changes nothing.
    Workers start from a fork server, not a fork of the caller: a caller that has loaded TensorFlow (the shift
    stage, tests) holds threads a forked child must not inherit (music21's parse then crashed in one)."""
    workers = workers or os.cpu_count() or 1
    jobs = ((w, seed, sample_rate_hz, clip_duration_s, str(audio_dir), soundfonts, timbre_variation) for w in works)
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        yield from pool.imap(_render_star, jobs, chunksize=2)


def render_works(works: list[Work], seed: int, sample_rate_hz: int, clip_duration_s: float, audio_dir: Path,
                 soundfonts: tuple[Path, ...], timbre_variation: bool, workers: int,
                 desc: str) -> tuple[list[dict], list[str]]:
    """(rows, reasons skipped) of rendering every one of `works` into `audio_dir`, with a progress bar
    (`desc`, clips/s, ETA)."""
    rows, skipped = [], []
    results = rendered(works, seed, sample_rate_hz, clip_duration_s, audio_dir, soundfonts, timbre_variation, workers)
    for result in tqdm(results, total=len(works), unit="clip", desc=desc):
        (skipped if isinstance(result, str) else rows).append(result)
    return rows, skipped


def works_by_id(clip_ids) -> dict[str, Work]:
    """The works of the clips `clip_ids`, by id; a one-line error for an id music21's corpus lacks."""
    works = {work.clip_id: work for work in list_works()}
    missing = [i for i in clip_ids if i not in works]
    if missing:
        raise MusictagError(f"corpus: {len(missing)} clip(s) not in music21's corpus, e.g. {missing[0]} "
                            "(another music21 version?)")
    return works


def build_corpus(n_clips: int, seed: int, sample_rate_hz: int, clip_duration_s: float,
                 split_fractions: list[float], audio_dir: str, soundfonts: list[str], timbre_variation: bool,
                 workers: int):
    """Render `n_clips` clips into `audio_dir` (replaced as a whole) and return their Manifest, each clip
    with one of `soundfonts` (file names or paths: `find_soundfont`), recorded in its `soundfont` column,
    and with its own `vary_timbre` if `timbre_variation`.

    Works are tried in the seeded interleaved order; a score that cannot be used is skipped and the
    next one taken, so the result is deterministic for a given seed and size. `workers=0` uses all cores.
    """
    fonts = training_soundfonts(soundfonts)
    works = interleave_by_collection(list_works(), seed)
    if n_clips > len(works):
        raise MusictagError(f"{PARAM}.n_clips: at most {len(works)} works are available, got {n_clips}")

    final_dir = Path(audio_dir).expanduser()
    staging_dir = final_dir.with_name(final_dir.name + ".partial")
    shutil.rmtree(staging_dir, ignore_errors=True)
    staging_dir.mkdir(parents=True)
    rows, skipped = [], []
    started = time.perf_counter()
    with tqdm(total=n_clips, unit="clip", desc="render corpus") as progress:
        for result in rendered(works, seed, sample_rate_hz, clip_duration_s, staging_dir, fonts, timbre_variation,
                               workers):
            if isinstance(result, str):
                skipped.append(result)
                if len(skipped) > max(50, len(rows)):
                    raise MusictagError(f"corpus: {len(skipped)} of the first scores were unusable, e.g. {skipped[0]}")
                continue
            rows.append(result)
            progress.update()
            if len(rows) == n_clips:
                break
    elapsed_s = time.perf_counter() - started
    print(f"rendered {len(rows)} clips in {elapsed_s:.1f} s ({len(rows) / elapsed_s:.1f} clips/s); "
          f"skipped {len(skipped)} unusable scores")

    kept = {r["file"] for r in rows}
    for leftover in staging_dir.iterdir():  # clips rendered by workers after the quota was met
        if leftover.name not in kept:
            leftover.unlink()
    replace_dir(staging_dir, final_dir)

    frame = pd.DataFrame(rows)
    frame["audio_path"] = [str(Path(audio_dir) / f) for f in frame["file"]]
    frame["split"] = grouped_split(list(frame["group"]), split_fractions, seed)
    targets = np.array([[t in set(tags) for t in TAG_NAMES] for tags in frame["tags"]], dtype=np.uint8)
    return Manifest(frame, list(TAG_NAMES), targets)
