"""Log-mel extraction speed: this project's `extract` against a plain per-file librosa loop.

    python benchmarks/extraction.py --songs 120            # clips of the embedded corpus (data/clean.csv)
    python benchmarks/extraction.py --songs 24 --long-s 240   # the same clips looped into 4-minute tracks

Prints songs/s for the plain loop (Algorithm 1 written the obvious way: librosa.load at 12 kHz,
middle crop, melspectrogram, square, power_to_db), for the project with 1 worker and with all cores,
the speed-up ratio (goal >= 3x on 2 cores) and the 1 -> N worker scaling. Run both in one go: the
machine is shared and noisy, so only ratios measured side by side mean much.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile

from musictag.datasets import Manifest
from musictag.paths import DATA_DIR, load_params, resolve
from musictag.spectrograms import extract


def plain_librosa(path: str, sample_rate_hz: int, duration_s: float, n_fft: int, hop_length: int,
                  n_mels: int, **_) -> np.ndarray:
    """Algorithm 1 as a newcomer writes it: decode and resample the whole file, then crop."""
    audio, _ = librosa.load(path, sr=sample_rate_hz)
    length = int(round(duration_s * sample_rate_hz))
    if len(audio) < length:
        audio = np.pad(audio, (0, length - len(audio)))
    else:
        start = (len(audio) - length) // 2
        audio = audio[start:start + length]
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate_hz, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    return librosa.power_to_db(mel**2, ref=1.0)


def looped_tracks(paths: list[str], seconds: float, out_dir: Path) -> list[str]:
    """Full-length tracks, as in MTG-Jamendo or a user's folder, made by looping each clip."""
    tracks = []
    for path in paths:
        audio, sample_rate_hz = soundfile.read(path, dtype="float32")
        repeats = int(np.ceil(seconds * sample_rate_hz / len(audio)))
        track = out_dir / Path(path).name
        soundfile.write(track, np.tile(audio, repeats)[: int(seconds * sample_rate_hz)], sample_rate_hz)
        tracks.append(str(track))
    return tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=120)
    parser.add_argument("--long-s", type=float, default=0, help="loop clips into tracks this long first")
    args = parser.parse_args()
    front_end = load_params("spectrograms")["front_end"]
    clips = Manifest.read(DATA_DIR / "clean.csv").clips.head(args.songs)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(resolve(p)) for p in clips["audio_path"]]
        if args.long_s:
            paths = looped_tracks(paths, args.long_s, Path(tmp))
        ids = list(clips["id"])
        started = time.perf_counter()
        for path in paths:
            plain_librosa(path, **front_end)
        plain_rate = len(paths) / (time.perf_counter() - started)
        rates = {}
        for workers in (1, os.cpu_count()):
            started = time.perf_counter()
            extract(ids, paths, Path(tmp) / f"store{workers}", front_end, chunk_size=64, workers=workers)
            rates[workers] = len(paths) / (time.perf_counter() - started)
    cores = os.cpu_count()
    what = f"{args.long_s:.0f} s tracks" if args.long_s else "corpus clips"
    print(f"extraction of {len(paths)} {what}:")
    print(f"  plain librosa loop     {plain_rate:7.2f} songs/s")
    print(f"  musictag, 1 worker     {rates[1]:7.2f} songs/s  ({rates[1] / plain_rate:.2f}x)")
    print(f"  musictag, {cores} workers    {rates[cores]:7.2f} songs/s  ({rates[cores] / plain_rate:.2f}x)  <- goal >= 3x")
    print(f"  scaling 1 -> {cores} workers: {rates[cores] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
