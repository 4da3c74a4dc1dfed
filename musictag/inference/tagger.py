"""A trained tagger: the model and its config, and its predictions for spectrogram batches and shards.

A Tagger is a folder that training wrote or a published tagger by name (musictag.pretrained).
`Tagger.predict_*` give the full (n, n_tags) probabilities and (n, d) penultimate embeddings that evaluation,
t-SNE and recommendation share; audio files are tagged by musictag.inference.audio_tagging (`top_tags`, the
one call a user makes). A model folder holds best.keras and config.json (written by training).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError
from musictag.inference.predictions import Predictions


class Tagger:
    """A trained model with its config; one forward pass gives probabilities and embeddings.

    `model` is a published tagger's name (musictag.pretrained.REFERENCE_TAGGERS: msd-crnn, msd-cnn) or a
    folder that training wrote (best.keras and config.json, e.g. the pipeline's data/model). `name` says which
    tagged, `weights_path` is the file the predictions depend on, `approximate` is non-empty for a published
    tagger whose author's outputs are not reproduced exactly, and says why."""

    def __init__(self, model: str | Path, checkpoint: str = "best.keras"):
        from musictag.pretrained import MSD_FRONT_END, MSD_TAGS, REFERENCE_TAGGERS, WEIGHTS_DIR

        self.pretrained = str(model) if str(model) in REFERENCE_TAGGERS else None
        if self.pretrained:
            reference = REFERENCE_TAGGERS[self.pretrained]
            self.name, self.approximate = self.pretrained, reference.approximate
            self.weights_path = WEIGHTS_DIR / reference.weights_file
            self.config = {"model": self.pretrained, "tag_names": list(MSD_TAGS), "front_end": dict(MSD_FRONT_END)}
        else:
            self.weights_path, config_path = Path(model) / checkpoint, Path(model) / "config.json"
            if not self.weights_path.exists():
                raise MusictagError(f"{self.weights_path}: no trained model (run `dvc repro train`, or name a "
                                    f"published one: {', '.join(REFERENCE_TAGGERS)})")
            self.config = json.loads(config_path.read_text())
            self.name, self.approximate = f"{model} ({self.config.get('model', '?')})", ""
        self.tag_names: list[str] = self.config["tag_names"]

    @functools.cached_property
    def model(self):
        """The Keras model, outputs (probabilities, embeddings), loaded on first use: importing
        TensorFlow prints its own lines on some CPUs, and a bad input file should be told first."""
        import keras  # here, not at the top: reading a model's config must not pay for importing Keras

        if self.pretrained:
            from musictag.pretrained import load

            model = load(self.pretrained).model
        else:
            import musictag.model.architectures  # noqa: F401  (registers the layers' custom functions)

            model = keras.saving.load_model(self.weights_path)
        return keras.Model(model.inputs, [model.output, model.get_layer("embedding").output])

    def predict_batches(self, batches) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (n, n_tags) and embeddings (n, d) for an iterable of (batch, n_mels, n_frames, 1)."""
        probabilities, embeddings = [], []
        for batch in batches:
            p, e = self.model.predict_on_batch(batch)
            probabilities.append(np.asarray(p, np.float32))
            embeddings.append(np.asarray(e, np.float32))
        return np.concatenate(probabilities), np.concatenate(embeddings)

    def predict_shards(self, shards_dir: Path, splits=("train", "valid", "test"), batch_size: int = 32) -> Predictions:
        """Every example of the shards' splits, in the same order on every machine and backend (the shards
        read by musictag.features.shard_reader, a fixed number at a time, ahead of the model)."""
        from musictag.features.shard_reader import epoch_batches, prefetched, read_index

        index = read_index(shards_dir)
        ids, split_names, probabilities, embeddings = [], [], [], []
        for split in splits:
            if index["splits"][split]["n_examples"] == 0:
                continue
            batch_ids = []

            def spectrograms(split=split):
                for spectrogram, _, id_batch in prefetched(epoch_batches(shards_dir, split, batch_size, with_ids=True)):
                    batch_ids.extend(id_batch)
                    yield spectrogram

            p, e = self.predict_batches(spectrograms())
            ids.extend(batch_ids)
            split_names.extend([split] * len(batch_ids))
            probabilities.append(p)
            embeddings.append(e)
        return Predictions(np.array(ids), np.array(split_names), np.concatenate(probabilities),
                           np.concatenate(embeddings), self.tag_names)


def predict_with_references(model: str | Path, shards_dir: Path, references: list[str]) -> Predictions:
    """`model`'s Predictions of every clip of the shards, with the penultimate embeddings of each published
    tagger named in `references` (the names of musictag.pretrained that recommend.features joins), computed
    here once so that recommendation and the catalogue read them like the model's own outputs. A published
    tagger reads the shards only if they hold its front end's spectrograms (else one line says so)."""
    from musictag.features.shard_reader import read_index

    predictions = Tagger(model).predict_shards(shards_dir)
    shards_front_end = read_index(shards_dir)["front_end"]
    for name in references:
        reference = Tagger(name)
        if reference.config["front_end"] != shards_front_end:
            raise MusictagError(f"recommend.features: {name} reads spectrograms of its own front end "
                                f"{reference.config['front_end']}, the shards hold {shards_front_end}: "
                                f"leave {name} out of recommend.features")
        theirs = reference.predict_shards(shards_dir)
        if theirs.ids.tolist() != predictions.ids.tolist():  # the shards are read in one fixed order
            raise MusictagError(f"{shards_dir}: the shards changed while {name} read them")
        predictions.reference_embeddings[name] = theirs.embeddings
    return predictions
