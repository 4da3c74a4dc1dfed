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

    def predict_shards(self, shards_dir: Path, splits=("train", "valid", "test"), batch_size: int = 32,
                       references: list[str] = ()) -> Predictions:
        """Every example of the shards' splits, in the same order on every machine and backend (the shards
        read by musictag.features.shard_reader, a fixed number at a time, ahead of the model). `references`
        names published taggers (musictag.pretrained) whose penultimate embeddings of the same batches the
        Predictions also carry (reference_embeddings): one read of the shards for every model. Each must take
        the shards' front end (else one line says so)."""
        from musictag.features.shard_reader import epoch_batches, prefetched, read_index

        index = read_index(shards_dir)
        others = {name: Tagger(name) for name in references}
        for name, other in others.items():
            if other.config["front_end"] != index["front_end"]:
                raise MusictagError(f"recommend.features: {name} reads spectrograms of its own front end "
                                    f"{other.config['front_end']}, the shards hold {index['front_end']}: "
                                    f"leave {name} out of recommend.features")
        ids, split_names, probabilities, embeddings = [], [], [], []
        theirs = {name: [] for name in others}
        for split in splits:
            if index["splits"][split]["n_examples"] == 0:
                continue
            for spectrograms, _, id_batch in prefetched(epoch_batches(shards_dir, split, batch_size, with_ids=True)):
                p, e = self.predict_batches([spectrograms])
                probabilities.append(p)
                embeddings.append(e)
                for name, other in others.items():
                    theirs[name].append(other.predict_batches([spectrograms])[1])
                ids.extend(id_batch)
                split_names.extend([split] * len(id_batch))
        return Predictions(np.array(ids), np.array(split_names), np.concatenate(probabilities),
                           np.concatenate(embeddings), self.tag_names,
                           {name: np.concatenate(vectors) for name, vectors in theirs.items()})
