"""How far the project's front end is from Choi's 2016 inputs on the same MP3s, and what it does to msd-crnn's tags.

    python benchmarks/msd_front_end.py [FOLDER]     # FOLDER: MP3s beside the author's .npy (default: the tests')

For each MP3 with a `.npy` of the same name (the author's (1, 1, 96, 1366) log-mel), prints the mean absolute
difference in dB between that input and
  window    the spectrogram `musictag tag --windows middle` computes (the middle window decoded alone),
  decoded   the middle 29.12 s of the whole file decoded (what librosa.load gives), unmoved,
  moved     the same window moved by the shift, searched sample by sample, that matches the .npy best,
and msd-crnn's top 5 for each, beside the top 5 on the author's input. The shift is the 2016 decoder's
offset against today's libsndfile/mpg123.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from musictag.audio.checks import check_audio  # noqa: E402
from musictag.audio.decoding import spectrogram_of  # noqa: E402
from musictag.audio.frontend import log_mel  # noqa: E402
from musictag.pretrained import MSD_FRONT_END, load  # noqa: E402

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference_taggers"
SEARCHED_SHIFTS = range(-400, 401)  # samples at 12 kHz: +-33 ms


def moved_window_spectrogram(audio: np.ndarray, shift: int) -> np.ndarray:
    """log_mel of the middle 29.12 s of `audio` (12 kHz, the whole file), moved `shift` samples later."""
    n_samples = round(MSD_FRONT_END["duration_s"] * MSD_FRONT_END["sample_rate_hz"])
    start = (len(audio) - n_samples) // 2 + shift
    log_mel_params = {k: v for k, v in MSD_FRONT_END.items() if k not in ("sample_rate_hz", "duration_s")}
    return log_mel(audio[start:start + n_samples], MSD_FRONT_END["sample_rate_hz"], **log_mel_params)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER
    tagger = load("msd-crnn")

    def top5(spectrogram: np.ndarray) -> str:
        probabilities = np.asarray(tagger.model.predict_on_batch(spectrogram[np.newaxis, ..., np.newaxis]))[0]
        return ", ".join(f"{tagger.tags[i]} {probabilities[i]:.3f}" for i in np.argsort(-probabilities)[:5])

    for mp3 in sorted(folder.glob("*.mp3")):
        author = np.load(mp3.with_suffix(".npy"))[0, 0].astype(np.float32)
        audio = check_audio(mp3, 1.0, -60.0, keep_at_hz=MSD_FRONT_END["sample_rate_hz"]).audio
        differences = {shift: float(np.abs(moved_window_spectrogram(audio, shift) - author).mean())
                       for shift in SEARCHED_SHIFTS}
        best = min(differences, key=differences.get)
        rows = {"author's .npy": (author, 0.0),
                "window": (spectrogram_of(mp3, **MSD_FRONT_END), None),
                "decoded": (moved_window_spectrogram(audio, 0), differences[0]),
                f"moved {best:+d}": (moved_window_spectrogram(audio, best), differences[best])}
        print(f"{mp3.name}: {len(audio)} samples at 12 kHz decoded")
        for name, (spectrogram, difference) in rows.items():
            difference = float(np.abs(spectrogram - author).mean()) if difference is None else difference
            print(f"  {name:14s} mean |dB - author's| {difference:5.2f}   msd-crnn: {top5(spectrogram)}")


if __name__ == "__main__":
    main()
