"""Choi et al.'s published MSD taggers, by name: `load("msd-crnn")` or `load("msd-cnn")`.

Keunwoo Choi released the Million Song Dataset weights of MusicTaggerCRNN (Choi, Fazekas, Sandler and Cho,
ICASSP 2017) and MusicTaggerCNN (Choi, Fazekas and Sandler, ISMIR 2016), trained on last.fm's 50 most
frequent tags, as Keras 1 HDF5 files (MIT licence, Copyright (c) 2016 Keunwoo Choi; the files and the
licence ship in musictag/inference/assets/reference_taggers). `load` reads them with h5py into the Keras 3
models of the project's registry (musictag.model.architectures: "msd-crnn", "msd-cnn"): no Keras 1, no
Theano, any Keras backend. Each comes with its tags and the front end its inputs need.

Keras 1 details the conversion follows, each checked against the author's published outputs: the files
hold channels-first (out, in, h, w) kernels in TensorFlow's convention (not flipped); the GRU weights are
separate (W, U, b) arrays per gate z, r, h; the CRNN's batch norms store the running variance under the
name running_std, while MusicTaggerCNN's, saved by Keras 1.0.6, store the running standard deviation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError

WEIGHTS_DIR = Path(__file__).parent / "inference" / "assets" / "reference_taggers"

MSD_TAGS = (  # the outputs' order, as published
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy")

# Choi's front end (his audio_processor): 12 kHz, the middle 29.12 s, mel power squared, dB re 1.0 with
# an 80 dB floor below the clip's maximum; as musictag.audio.frontend computes it.
MSD_FRONT_END = {"sample_rate_hz": 12000, "duration_s": 29.12, "n_fft": 512, "hop_length": 256, "n_mels": 96,
                 "square_power": True, "ref": 1.0, "amin": 1e-10, "top_db": 80.0}
MSD_INPUT_SHAPE = (96, 1366)  # (n_mels, n_frames): musictag.audio.frontend.spectrogram_shape of MSD_FRONT_END


@dataclass(frozen=True)
class ReferenceTagger:
    """A published tagger's file and what is known of it: `variance_stored` says whether its batch norms
    hold the running variance (else the standard deviation); `approximate` names why its outputs may
    differ from the author's, or is empty when they are reproduced exactly."""

    weights_file: str
    citation: str
    variance_stored: bool
    approximate: str = ""


def reference_names(features: list[str]) -> list[str]:
    """The names in `features` (recommend.features) that are published taggers' embeddings, in order: the
    blocks the predict stage, the catalogue and an audio query compute beside the catalogue model's own."""
    return [name for name in features if name in REFERENCE_TAGGERS]


REFERENCE_TAGGERS: dict[str, ReferenceTagger] = {
    "msd-crnn": ReferenceTagger(
        "music_tagger_crnn_weights_tensorflow.h5",
        "Choi, Fazekas, Sandler and Cho, Convolutional recurrent neural networks for music classification, "
        "ICASSP 2017", variance_stored=True),
    "msd-cnn": ReferenceTagger(
        "music_tagger_cnn_weights_tensorflow.h5",
        "Choi, Fazekas and Sandler, Automatic tagging using deep convolutional neural networks, ISMIR 2016",
        variance_stored=False,
        approximate="its author's outputs came from Keras 1.0.6 normalising with the statistics of a batch of "
                    "four songs, two of whose inputs were never published (README: msd-cnn)"),
}


@dataclass
class Pretrained:
    """A published tagger ready to use. `model` maps log-mel dB (batch, 96, 1366, 1), Choi's front end
    (`front_end`, musictag.audio.frontend's keyword arguments), to the probabilities (batch, 50) of `tags`;
    its layer "embedding" gives the features before the output layer (32-d for msd-crnn, 256-d for msd-cnn)."""

    name: str
    model: object  # keras.Model
    tags: list[str]
    front_end: dict
    approximate: str


def load(name: str) -> Pretrained:
    """The published tagger `name` (a key of REFERENCE_TAGGERS), built by the model registry and filled with
    its author's weights. An unknown name is a one-line MusictagError listing the known ones."""
    if name not in REFERENCE_TAGGERS:
        raise MusictagError(f"pretrained model: unknown name '{name}'; known: {', '.join(REFERENCE_TAGGERS)}")
    from musictag.model.architectures import build_model

    reference = REFERENCE_TAGGERS[name]
    model = build_model(name, n_tags=len(MSD_TAGS), n_mels=MSD_INPUT_SHAPE[0], n_frames=MSD_INPUT_SHAPE[1])
    for layer_name, weights in keras1_weights(WEIGHTS_DIR / reference.weights_file, reference.variance_stored).items():
        model.get_layer(layer_name).set_weights(weights)
    return Pretrained(name, model, list(MSD_TAGS), dict(MSD_FRONT_END), reference.approximate)


def keras1_weights(path: Path, variance_stored: bool) -> dict[str, list[np.ndarray]]:
    """The weights of a Keras 1 HDF5 file of Choi's taggers, as Keras 3 `set_weights` lists keyed by the
    registry model's layer names: conv{i} -> unit{i}_conv, bn{i} -> unit{i}_bn, bn_0_freq, gru{i}, output."""
    import h5py

    converted = {}
    with h5py.File(path, "r") as file:
        for layer_name in (name.decode() for name in file.attrs["layer_names"]):
            arrays = {_role(key, layer_name): np.asarray(value) for key, value in file[layer_name].items()}
            if not arrays:  # padding, activations, pooling, dropout, reshaping
                continue
            if layer_name.startswith("conv"):
                converted[f"unit{layer_name[4:]}_conv"] = [arrays["W"].transpose(2, 3, 1, 0), arrays["b"]]
            elif layer_name.startswith("bn"):
                spread = arrays["running_std"] if variance_stored else np.square(arrays["running_std"])
                keras3_name = layer_name if layer_name == "bn_0_freq" else f"unit{layer_name[2:]}_bn"
                converted[keras3_name] = [arrays["gamma"], arrays["beta"], arrays["running_mean"], spread]
            elif layer_name.startswith("gru"):  # Keras 3 stacks the gates z, r, h along the last axis
                converted[layer_name] = [np.concatenate([arrays[f"{kind}_{gate}"] for gate in "zrh"], axis=-1)
                                         for kind in ("W", "U", "b")]
            elif layer_name == "output":
                converted["output"] = [arrays["W"], arrays["b"]]
            else:
                raise MusictagError(f"{path}: unexpected layer with weights: {layer_name}")
    return converted


def _role(key: str, layer_name: str) -> str:
    """The weight's role in a Keras 1 array name: 'conv1_W_1:0' -> 'W', 'gru1_U_z:0' -> 'U_z',
    'bn_0_freq_running_std:0' -> 'running_std' (the layer's name first, ':0' and in some files '_1' last)."""
    return key.split(":")[0].removeprefix(f"{layer_name}_").removesuffix("_1")
