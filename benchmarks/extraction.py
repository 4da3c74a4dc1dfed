"""Log-mel extraction speed: this project's `extract` against a plain per-file librosa loop.

    python benchmarks/extraction.py --songs 120            # clips of the embedded corpus (data/clean.csv)
    python benchmarks/extraction.py --songs 24 --long-s 240   # the same clips looped into 4-minute tracks

Prints songs/s for the plain loop (Algorithm 1 written the obvious way: librosa.load at 12 kHz,
middle crop, melspectrogram, square, power_to_db), for the project with 1 worker and with all cores,
the speed-up ratio (goal >= 3x on 2 cores) and the 1 -> N worker scaling. The three run side by side
`--repeats` times and the medians are printed: the machine is shared and noisy, so only ratios
measured together mean much.

Both sides are timed warm: the plain loop after one untimed song (librosa's lazy imports take
seconds), the project including its pool start and warm_up (cheap here: the plain loop has done
librosa's imports). The plain loop runs BLAS (librosa's mel product) on one thread: with OpenBLAS's
default of one thread a core, a 2-core machine that is busy with anything else makes it 2-4x slower
per song, which would flatter the project; on an idle machine one thread costs it about 1 ms a song.
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile
from threadpoolctl import threadpool_limits

from musictag.datasets.manifest import Manifest
from musictag.features.extraction import extract
from musictag.params import defaults
from musictag.paths import DATA_DIR, resolve


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
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three measurements")
    args = parser.parse_args()
    options = defaults("spectrograms", executor="processes", chunk_size=64)  # workers set below
    front_end = options["front_end"]
    clips = Manifest.read(DATA_DIR / "clean.csv").clips.head(args.songs)
    cores = os.cpu_count()
    rounds = []  # songs/s of the plain loop, 1 worker and all cores, per round
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(resolve(p)) for p in clips["audio_path"]]
        if args.long_s:
            paths = looped_tracks(paths, args.long_s, Path(tmp))
        ids = list(clips["id"])
        plain_librosa(paths[0], **front_end)
        for _ in range(args.repeats):
            started = time.perf_counter()
            with threadpool_limits(1, user_api="blas"):
                for path in paths:
                    plain_librosa(path, **front_end)
            rates = [len(paths) / (time.perf_counter() - started)]
            for workers in (1, cores):
                started = time.perf_counter()
                extract(ids, paths, Path(tmp) / f"store{workers}", **{**options, "workers": workers})
                rates.append(len(paths) / (time.perf_counter() - started))
            rounds.append(rates)
    plain_rate, rate_1, rate_n = (statistics.median(column) for column in zip(*rounds))
    ratios = [(one / plain, many / plain, many / one) for plain, one, many in rounds]
    speedup_1, speedup_n, scaling = (statistics.median(column) for column in zip(*ratios))
    what = f"{args.long_s:.0f} s tracks" if args.long_s else "corpus clips"
    print(f"extraction of {len(paths)} {what}, medians of {args.repeats} rounds:")
    print(f"  plain librosa loop     {plain_rate:7.2f} songs/s")
    print(f"  musictag, 1 worker     {rate_1:7.2f} songs/s  ({speedup_1:.2f}x)")
    print(f"  musictag, {cores} workers    {rate_n:7.2f} songs/s  ({speedup_n:.2f}x)  <- goal >= 3x")
    print(f"  scaling 1 -> {cores} workers: {scaling:.2f}x"
          f"   (rounds: {'; '.join(' '.join(f'{rate:.1f}' for rate in r) for r in rounds)} songs/s)")


if __name__ == "__main__":
    main()
