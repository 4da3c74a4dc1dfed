"""The canonical manifest every dataset adapter produces, and the seeded split they share.

The manifest is a CSV with one row per clip: `id, audio_path, split, artist, title`, the optional
`soundfont` (the embedded corpus: which soundfont rendered the clip), then one 0/1 column per tag named
`tag:<name>`, in the dataset's tag order. Everything downstream (clean,
spectrograms, shards, training) reads only this file, so a new dataset needs only an adapter
(musictag.datasets.adapters) that returns a Manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from musictag.errors import MusictagError
from musictag.files import write_csv

SPLITS = ("train", "valid", "test")
BASE_COLUMNS = ["id", "audio_path", "split", "artist", "title"]
OPTIONAL_COLUMNS = ["soundfont"]  # kept where an adapter gives them
TAG_PREFIX = "tag:"


@dataclass
class Manifest:
    """Clips (one row each, BASE_COLUMNS and any OPTIONAL_COLUMNS) with their binary tag matrix of shape
    (n_clips, n_tags)."""

    clips: pd.DataFrame
    tag_names: list[str]
    targets: np.ndarray

    def __post_init__(self):
        self.clips = self.clips[_columns(self.clips)].reset_index(drop=True)
        self.targets = np.asarray(self.targets, dtype=np.uint8).reshape(len(self.clips), len(self.tag_names))
        bad_splits = set(self.clips["split"]) - set(SPLITS)
        if bad_splits:
            raise MusictagError(f"manifest: unknown split name(s) {sorted(bad_splits)}; use {list(SPLITS)}")
        if self.clips["id"].duplicated().any():
            dup = self.clips.loc[self.clips["id"].duplicated(), "id"].iloc[0]
            raise MusictagError(f"manifest: clip id '{dup}' appears more than once")

    def __len__(self) -> int:
        return len(self.clips)

    def split(self, name: str) -> "Manifest":
        """The clips of one split, in manifest order."""
        keep = (self.clips["split"] == name).to_numpy()
        return Manifest(self.clips[keep], self.tag_names, self.targets[keep])

    def to_frame(self) -> pd.DataFrame:
        tags = pd.DataFrame(self.targets, columns=[TAG_PREFIX + t for t in self.tag_names])
        return pd.concat([self.clips, tags], axis=1)

    def write(self, path: Path) -> None:
        """Write atomically: a reader never sees half a manifest."""
        write_csv(path, self.to_frame())

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            frame = pd.read_csv(path, dtype={c: str for c in BASE_COLUMNS + OPTIONAL_COLUMNS}, keep_default_na=False)
        except FileNotFoundError:
            raise MusictagError(f"{path}: manifest not found (run `dvc repro dataset`)") from None
        missing = [c for c in BASE_COLUMNS if c not in frame.columns]
        if missing:
            raise MusictagError(f"{path}: manifest lacks column(s) {missing}")
        tag_columns = [c for c in frame.columns if c.startswith(TAG_PREFIX)]
        return cls(
            frame[_columns(frame)],
            [c[len(TAG_PREFIX):] for c in tag_columns],
            frame[tag_columns].to_numpy(dtype=np.uint8),
        )

    def summary(self) -> dict:
        """Headline counts for metrics/: clips, tags, clips per split."""
        return {
            "n_clips": len(self),
            "n_tags": len(self.tag_names),
            "clips_per_split": {s: int((self.clips["split"] == s).sum()) for s in SPLITS},
        }

    def positives_per_tag(self) -> pd.DataFrame:
        """One row per tag: its positive clips in each split and in all (a plot, not a metric: 50 rows)."""
        counts = {split: self.targets[(self.clips["split"] == split).to_numpy()].sum(axis=0) for split in SPLITS}
        frame = pd.DataFrame({"tag": self.tag_names, **counts})
        frame["all"] = self.targets.sum(axis=0)
        return frame


def _columns(frame: pd.DataFrame) -> list[str]:
    return BASE_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in frame.columns]


def grouped_split(groups: Sequence[str], fractions: Sequence[float], seed: int) -> list[str]:
    """Seeded train/valid/test per clip, drawn a whole group (work, artist) at a time.

    Groups, in a seeded order, go to the split furthest below its share of clips (`fractions`: three
    non-negative shares, checked by musictag.params); while there are no more groups left than empty
    splits, an empty split takes the next one, so with three groups or more every split with a non-zero
    share gets at least one.
    """
    shares = np.asarray(fractions, dtype=float)
    names, sizes = np.unique(np.asarray(groups, dtype=str), return_counts=True)  # sorted: input order is moot
    deficit = shares / shares.sum() * len(groups)
    n_groups = np.zeros(len(SPLITS), dtype=int)
    split_of: dict[str, str] = {}
    for position, i in enumerate(np.random.default_rng(seed).permutation(len(names))):
        empty = [s for s in range(len(SPLITS)) if shares[s] > 0 and n_groups[s] == 0]
        chosen = empty[0] if len(names) - position <= len(empty) else int(np.argmax(deficit))
        split_of[str(names[i])] = SPLITS[chosen]
        deficit[chosen] -= sizes[i]
        n_groups[chosen] += 1
    return [split_of[group] for group in groups]
