"""Timbre shift: how much of what a tagger learned is the synthesiser's sound rather than the music.

The embedded corpus's clips of one split are rendered again with each held-out soundfont, note for note:
the same works, windows, tempo, instruments and velocities (musictag.datasets.corpus draws the soundfont
from a stream of its own). The trained model tags them through the pipeline's own front end, and each
tag family's macro ROC-AUC on the held-out renderings is set against the split as rendered for training.
A drop in the instrument tags and none elsewhere means the model learned one synthesiser's samples.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from musictag.audio.decoding import spectrogram_of
from musictag.datasets.categories import tag_categories
from musictag.datasets.corpus import find_soundfont, render_works, works_by_id
from musictag.errors import MusictagError
from musictag.evaluation.scores import align_ground_truth
from musictag.inference.predictions import Predictions
from musictag.inference.tagger import Tagger

INSTRUMENT = "instrument"
GROUPS = ("all", INSTRUMENT, "other")  # the headline: every tag, the instrument family, every other family
PREDICT_BATCH = 32


def tag_groups(tag_names: Sequence[str], family_of: dict[str, str]) -> dict[str, list[str]]:
    """Every family's tags but the instrument family's, by family name, then GROUPS: `all` tags, the
    `instrument` family, every `other` tag."""
    families: dict[str, list[str]] = {}
    for tag in tag_names:
        if family_of[tag] != INSTRUMENT:
            families.setdefault(family_of[tag], []).append(tag)
    return dict(sorted(families.items())) | {
        "all": list(tag_names), INSTRUMENT: [t for t in tag_names if family_of[t] == INSTRUMENT],
        "other": [t for t in tag_names if family_of[t] != INSTRUMENT]}


def group_roc_auc(y_true: np.ndarray, y_prob: np.ndarray, tag_names: Sequence[str],
                  groups: dict[str, list[str]]) -> dict[str, float | None]:
    """Macro ROC-AUC (the mean over its tags) of every group of `tag_groups`. Only tags with both positive
    and negative clips count; a group with none of them is None."""
    auc = {tag_names[j]: float(roc_auc_score(y_true[:, j], y_prob[:, j]))
           for j in range(len(tag_names)) if 0 < y_true[:, j].sum() < len(y_true)}
    scores = {}
    for group, tags in groups.items():
        counted = [auc[t] for t in tags if t in auc]
        scores[group] = float(np.mean(counted)) if counted else None
    return scores


def held_out_probabilities(tagger: Tagger, ids: Sequence[str], soundfont: Path, seed: int, sample_rate_hz: int,
                           clip_duration_s: float, timbre_variation: bool, spectrogram_dtype: str,
                           workers: int) -> np.ndarray:
    """The model's probabilities (n, n_tags) for the clips `ids` rendered with `soundfont`, through the
    pipeline's front end and stored precision (`spectrogram_dtype`, as the shards hold spectrograms)."""
    works = works_by_id(ids)
    with tempfile.TemporaryDirectory(prefix="musictag-shift-") as audio_dir:
        rows, skipped = render_works([works[i] for i in ids], seed, sample_rate_hz, clip_duration_s, Path(audio_dir),
                                     (soundfont,), timbre_variation, workers, desc=f"render {soundfont.name}")
        if skipped:
            raise MusictagError(f"{soundfont}: {len(skipped)} clip(s) could not be rendered again, e.g. {skipped[0]}")
        paths = {row["id"]: Path(audio_dir) / row["file"] for row in rows}
        front_end = tagger.config["front_end"]
        batches, probabilities = [], []
        for song_id in tqdm(ids, unit="clip", desc=f"tag {soundfont.name}"):
            spectrogram = spectrogram_of(paths[song_id], **front_end).astype(spectrogram_dtype).astype(np.float32)
            batches.append(spectrogram[..., np.newaxis])
            if len(batches) == PREDICT_BATCH or song_id == ids[-1]:
                p, _ = tagger.predict_batches([np.stack(batches)])
                probabilities.append(p)
                batches = []
    return np.concatenate(probabilities)


def timbre_shift(model_dir: Path, predictions_path: Path, manifest_path: Path, held_out: Sequence[str], split: str,
                 seed: int, sample_rate_hz: int, clip_duration_s: float, timbre_variation: bool,
                 spectrogram_dtype: str, workers: int) -> tuple[dict, pd.DataFrame]:
    """(headline, per-family table) of the `split` of the embedded corpus (rendered by `seed`,
    `sample_rate_hz`, `clip_duration_s`, `timbre_variation`: data.embedded's values) as rendered for training (the
    predictions the pipeline saved) and re-rendered with each soundfont of `held_out`.

    The headline holds macro ROC-AUC of GROUPS as trained and per held-out soundfont, and the drops; the
    table one row per group of `tag_groups` (each family, then GROUPS) with its tag count, the same figures
    and the drops."""
    soundfonts = [find_soundfont(name, "shift.soundfonts") for name in held_out]
    trained = Predictions.load(predictions_path).subset(split)
    if len(trained) == 0:
        raise MusictagError(f"shift.split: the predictions hold no '{split}' clips")
    y_true, _ = align_ground_truth(trained, manifest_path)
    tag_names, ids = trained.tag_names, [str(i) for i in trained.ids]
    groups = tag_groups(tag_names, tag_categories("embedded", tag_names, {}))
    scores = {"as_trained": group_roc_auc(y_true, trained.probabilities, tag_names, groups)}
    tagger = Tagger(model_dir)
    for soundfont in soundfonts:
        probabilities = held_out_probabilities(tagger, ids, soundfont, seed, sample_rate_hz, clip_duration_s,
                                               timbre_variation, spectrogram_dtype, workers)
        scores[soundfont.stem] = group_roc_auc(y_true, probabilities, tag_names, groups)
    held = [s.stem for s in soundfonts]

    def drop(name: str, group: str) -> float | None:
        before, after = scores["as_trained"][group], scores[name][group]
        return None if before is None or after is None else round(before - after, 4)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    headline = {"split": split, "n_clips": len(ids),
                "roc_auc": {name: {g: rounded(scores[name][g]) for g in GROUPS} for name in scores},
                "drop": {name: {g: drop(name, g) for g in GROUPS} for name in held}}
    table = pd.DataFrame([{"group": group, "n_tags": len(tags), **{name: rounded(scores[name][group]) for name in scores},
                           **{f"drop {name}": drop(name, group) for name in held}} for group, tags in groups.items()])
    return headline, table
