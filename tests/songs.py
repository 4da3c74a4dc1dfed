"""Songs for tests that read predictions: a tagger's outputs shaped like real ones and a manifest of real clips."""
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from musictag.datasets.manifest import Manifest
from musictag.inference.predictions import Predictions


def synthetic_probabilities(n_songs: int, n_tags: int = 50, n_styles: int = 12, seed: int = 0) -> np.ndarray:
    """Tag probabilities shaped like a tagger's: each song a sparse Dirichlet mix of `n_styles`
    hidden styles, each style raising some tags' logits, plus per-tag noise, through a sigmoid."""
    rng = np.random.default_rng(seed)
    mix = rng.dirichlet(np.full(n_styles, 0.3), size=n_songs)
    style_logits = rng.normal(0.0, 3.0, size=(n_styles, n_tags))
    logits = mix @ style_logits - 2.0 + rng.normal(0.0, 0.7, size=(n_songs, n_tags))
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


NASTY = '</script><script>alert(1)</script> & "q" <!-- $x$'


def catalogue(root: Path, n: int = 40, n_tags: int = 16, seed: int = 0):
    """Predictions-like songs (all test but two train) and a manifest whose clips are real 1 s WAVs."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"song{i:03d}" for i in range(n)])
    tags = [f"tag{t}" for t in range(n_tags)]
    tags[1] = NASTY
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, song_id in enumerate(ids):
        tone = 0.2 * np.sin(2 * np.pi * (220 + 10 * i) * np.arange(8000) / 8000)
        soundfile.write(root / "corpus" / f"{song_id}.wav", tone.astype(np.float32), 8000)
        paths.append(str(root / "corpus" / f"{song_id}.wav"))
    splits = ["test"] * (n - 2) + ["train"] * 2
    probabilities = synthetic_probabilities(n, n_tags, n_styles=4, seed=seed)
    predictions = Predictions(np.array(ids), np.array(splits), probabilities,
                              rng.normal(size=(n, 5)).astype(np.float32), tags)
    clips = pd.DataFrame({"id": ids, "audio_path": paths, "split": splits,
                          "artist": [f"Artist {i % 5}" for i in range(n)],
                          "title": [f"Song {i} {NASTY}" if i == 7 else f"Song {i}" for i in range(n)]})
    return predictions, Manifest(clips, tags, probabilities > 0.5)
