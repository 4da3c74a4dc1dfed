"""A tagger's outputs for a set of clips, as the predict stage, the catalogue and paper runs save them (.npz):
the one format evaluation, recommendation and the t-SNE map read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError
from musictag.files import write_atomic

REFERENCE_PREFIX = "embeddings_of_"  # the .npz key of a published tagger's embeddings: embeddings_of_msd-cnn


@dataclass
class Predictions:
    """Model outputs for a set of clips: probabilities (n, n_tags) and embeddings (n, d), row i = ids[i];
    `reference_embeddings` maps a published tagger's name (musictag.pretrained) to its penultimate
    embeddings of the same clips (n, d_name), which a recommendation space may join (recommend.features)."""

    ids: np.ndarray
    splits: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray
    tag_names: list[str]
    reference_embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        references = {REFERENCE_PREFIX + name: vectors for name, vectors in self.reference_embeddings.items()}
        write_atomic(Path(path), lambda tmp: np.savez(tmp, ids=self.ids, splits=self.splits,
                                                      probabilities=self.probabilities, embeddings=self.embeddings,
                                                      tag_names=np.array(self.tag_names), **references))

    @classmethod
    def load(cls, path: Path) -> "Predictions":
        try:
            with np.load(path, allow_pickle=False) as data:
                references = {key[len(REFERENCE_PREFIX):]: data[key] for key in data.files
                              if key.startswith(REFERENCE_PREFIX)}
                return cls(data["ids"], data["splits"], data["probabilities"], data["embeddings"],
                           [str(t) for t in data["tag_names"]], references)
        except FileNotFoundError:
            raise MusictagError(f"{path}: predictions not found (run `dvc repro predict`)") from None
        except KeyError as err:
            raise MusictagError(f"{path}: predictions lack the array {err}") from None
        except (OSError, ValueError, EOFError) as err:
            raise MusictagError(f"{path}: cannot read predictions ({type(err).__name__})") from None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows) -> "Predictions":
        """The rows `rows` (a boolean mask or indices), in that order."""
        return Predictions(self.ids[rows], self.splits[rows], self.probabilities[rows], self.embeddings[rows],
                           self.tag_names, {name: vectors[rows] for name, vectors in self.reference_embeddings.items()})

    def subset(self, split: str) -> "Predictions":
        """The clips of one split, in order."""
        return self.take(self.splits == split)
