"""Tagging a library of full-length tracks: musictag.inference.audio_tagging against the obvious loop.

    python benchmarks/tag_library.py --tracks 24 --repeats 3

Tracks are made from the embedded corpus: each clip looped to a 3-7 minute track, upsampled to
44.1 or 48 kHz stereo and written as MP3 (or OGG where libsndfile lacks MP3), alternately. The obvious
loop is what a user writes first: librosa.load(path, sr=12000) of the whole file, then the model on
each 29.12 s window (all-windows mode) or on the middle window only, one file after the other.
musictag.inference.audio_tagging decodes in bounded workers on every core while the parent predicts, batching windows
across files. Both use data/model (run `dvc repro train` first). Prints tracks/s per mode and the
ratio (goal >= 3x); the sides run alternately `--repeats` times and the medians are printed.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile
import soxr

from musictag.audio.frontend import log_mel
from musictag.datasets.manifest import Manifest
from musictag.inference.audio_tagging import tag_files
from musictag.inference.tagger import Tagger
from musictag.params import defaults
from musictag.paths import DATA_DIR, resolve


def full_length_tracks(clip_paths: list[str], out_dir: Path, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    container = "MP3" if "MP3" in soundfile.available_formats() else "OGG"
    tracks = []
    for i, path in enumerate(clip_paths):
        audio, clip_hz = soundfile.read(path, dtype="float32")
        rate_hz = (44100, 48000)[i % 2]
        audio = soxr.resample(audio, clip_hz, rate_hz)
        seconds = float(rng.uniform(180, 420))
        audio = np.tile(audio, int(np.ceil(seconds * rate_hz / len(audio))))[: int(seconds * rate_hz)]
        stereo = np.stack([audio, 0.8 * audio], axis=1)
        track = out_dir / f"track{i:03d}.{container.lower()}"
        soundfile.write(track, stereo, rate_hz, format=container)
        tracks.append(str(track))
    return tracks


def obvious_loop(tagger: Tagger, paths: list[str], windows: str) -> None:
    front_end = dict(tagger.config["front_end"])
    sample_rate_hz, duration_s = front_end.pop("sample_rate_hz"), front_end.pop("duration_s")
    window = round(duration_s * sample_rate_hz)
    for path in paths:
        audio, _ = librosa.load(path, sr=sample_rate_hz)
        if windows == "middle":
            start = max(0, (len(audio) - window) // 2)
            cuts = [audio[start:start + window]]
        else:
            cuts = [audio[s:s + window] for s in range(0, len(audio), window)]
        for cut in cuts:
            spectrogram = log_mel(np.pad(cut, (0, window - len(cut))), sample_rate_hz, **front_end)
            tagger.predict_batches([spectrogram[np.newaxis, ..., np.newaxis]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tagger = Tagger(DATA_DIR / "model")
    catalogue, clean = defaults("catalogue"), defaults("clean")  # as the catalogue stage tags
    limits = {"timeout_s": catalogue["timeout_s"], "memory_limit_mb": catalogue["memory_limit_mb"],
              "min_duration_s": clean["min_duration_s"], "silence_dbfs": clean["silence_dbfs"]}
    clips = Manifest.read(DATA_DIR / "clean.csv").clips.head(args.tracks)
    with tempfile.TemporaryDirectory() as tmp:
        paths = full_length_tracks([str(resolve(p)) for p in clips["audio_path"]], Path(tmp))
        minutes = sum(soundfile.info(p).duration for p in paths) / 60
        obvious_loop(tagger, paths[:1], "middle")  # warm: TensorFlow, librosa's lazy imports
        rates = {mode: ([], []) for mode in ("all", "middle")}
        for _ in range(args.repeats):
            for mode, (plain, library) in rates.items():
                started = time.perf_counter()
                obvious_loop(tagger, paths, mode)
                plain.append(len(paths) / (time.perf_counter() - started))
                started = time.perf_counter()
                for _, tagged in tag_files(tagger, paths, mode, **limits):
                    assert not hasattr(tagged, "reason"), tagged
                library.append(len(paths) / (time.perf_counter() - started))
    print(f"tagging {len(paths)} full-length tracks ({minutes:.0f} min of MP3/OGG at 44.1/48 kHz), "
          f"medians of {args.repeats} rounds:")
    for mode, (plain, library) in rates.items():
        ratio = statistics.median(b / a for a, b in zip(plain, library))
        print(f"  {mode:6s} windows: obvious loop {statistics.median(plain):6.3f} tracks/s, "
              f"musictag.inference.audio_tagging {statistics.median(library):6.3f} tracks/s  ({ratio:.2f}x)  <- goal >= 3x")


if __name__ == "__main__":
    main()
