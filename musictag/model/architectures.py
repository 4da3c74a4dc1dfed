"""The CNN taggers, as Keras 3 builder functions over `keras.layers` and `keras.ops` only.

Every model maps a log-mel spectrogram batch (batch, n_mels, n_frames, 1) to tag probabilities
(batch, n_tags) through sigmoid outputs, and names its penultimate layer "embedding" so predictions
and embeddings come from one forward pass. No `tf.` call appears here, so the same model runs under
the JAX or PyTorch backend. The layers are plain Keras ones; training speeds them up from outside
(musictag.model.acceleration). Pick one by name from MODELS.
"""
from __future__ import annotations

import math
from typing import Callable

import keras
from keras import layers

from musictag.errors import MusictagError


def input_normalization(inputs, name: str = "input_norm"):
    """Batch-normalise each mel band (Choi et al.'s code normalises the input along frequency)."""
    return layers.BatchNormalization(axis=1, name=name)(inputs)


def conv_unit(x, filters: int, kernel: tuple[int, int], pool: tuple[int, int] | None, padding: str,
              batch_norm: bool, name: str):
    """Dissertation section 3.2.2: convolution -> batch norm -> ELU -> max pooling."""
    x = layers.Conv2D(filters, kernel, padding=padding, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(axis=-1, name=f"{name}_bn")(x)
    x = layers.Activation("elu", name=f"{name}_elu")(x)
    if pool is not None:
        x = layers.MaxPooling2D(pool, name=f"{name}_pool")(x)
    return x


def _tagger(inputs, features, n_tags: int, name: str) -> keras.Model:
    """Close a model: the penultimate features are the "embedding", then one sigmoid per tag."""
    embedding = layers.Identity(name="embedding")(features)
    outputs = layers.Dense(n_tags, activation="sigmoid", name="output")(embedding)
    return keras.Model(inputs, outputs, name=name)


def build_k2c1(n_tags: int, n_mels: int, n_frames: int, widths=(152, 152, 152, 304, 304),
               dense_units: int = 304, kernel_frames: int = 4, pool_frames: int = 4) -> keras.Model:
    """k2c1 (Choi et al. 2017; dissertation tables 3.2-3.3): a full-height 2D kernel, then 1D convolutions.

    ConvUnit1 learns (n_mels x 4) kernels that fold the whole band into one row (ELU, no pooling);
    ConvUnits 2-5 convolve 1x4 along time, each pooled 1x4; all convolutions are 'valid'.
    Then two dense ELU layers of `dense_units`. About 1.28M parameters with the defaults.
    Shapes: (b, 96, 1366, 1) -> (b, 1, 1363, 152) -> ... -> (b, 1, 4, 304) -> (b, 1216) -> (b, n_tags).
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = input_normalization(inputs)
    x = conv_unit(x, widths[0], (n_mels, kernel_frames), None, "valid", batch_norm=False, name="unit1")
    for i, width in enumerate(widths[1:], start=2):
        x = conv_unit(x, width, (1, kernel_frames), (1, pool_frames), "valid", batch_norm=True, name=f"unit{i}")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="elu", name="dense1")(x)
    x = layers.Dense(dense_units, activation="elu", name="dense2")(x)
    return _tagger(inputs, x, n_tags, "k2c1")


def build_k1c2(n_tags: int, n_mels: int, n_frames: int, widths=(47, 47, 95, 95),
               pools=((1, 4), (1, 5), (1, 8), (1, 8)), dense_units: int = 95, kernel_frames: int = 4) -> keras.Model:
    """k1c2 (Choi et al. 2017; dissertation tables 3.4-3.5): 1x4 kernels convolved over both axes.

    Four 'same'-padded ConvUnits pooled (1x4)-(1x5)-(1x8)-(1x8) keep one row per mel band, so the
    flattened feature holds a feature per band; two dense ELU layers of `dense_units` follow.
    About 0.94M parameters. Shapes: (b, 96, 1366, 1) -> (b, 96, 341, 47) -> (b, 96, 68, 47)
    -> (b, 96, 8, 95) -> (b, 96, 1, 95) -> (b, 9120) -> (b, 95) -> (b, 95) -> (b, n_tags).
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = input_normalization(inputs)
    for i, (width, pool) in enumerate(zip(widths, pools), start=1):
        x = conv_unit(x, width, (1, kernel_frames), pool, "same", batch_norm=True, name=f"unit{i}")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="elu", name="dense1")(x)
    x = layers.Dense(dense_units, activation="elu", name="dense2")(x)
    return _tagger(inputs, x, n_tags, "k1c2")


def build_k2c2(n_tags: int, n_mels: int, n_frames: int, widths=(67, 135, 135, 203, 271),
               pools=((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)), kernel: tuple[int, int] = (3, 3)) -> keras.Model:
    """k2c2 (Choi et al. 2017; dissertation tables 3.6-3.7): fully convolutional, 3x3 kernels.

    Five 'same'-padded ConvUnits pooled (2x4)-(2x4)-(2x4)-(3x5)-(4x4) shrink the input to one
    pixel of 271 maps, which feeds the sigmoid output directly. About 1.0M parameters.
    Shapes: (b, 96, 1366, 1) -> (b, 48, 341, 67) -> (b, 24, 85, 135) -> (b, 12, 21, 135)
    -> (b, 4, 4, 203) -> (b, 1, 1, 271) -> (b, 271) -> (b, n_tags).
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = input_normalization(inputs)
    for i, (width, pool) in enumerate(zip(widths, pools), start=1):
        x = conv_unit(x, width, kernel, pool, "same", batch_norm=True, name=f"unit{i}")
    x = layers.Flatten(name="flatten")(x)
    return _tagger(inputs, x, n_tags, "k2c2")


def build_crnn(n_tags: int, n_mels: int, n_frames: int, widths=(96, 192, 192, 192),
               pools=((2, 2), (3, 3), (4, 4), (4, 4)), gru_units: int = 96) -> keras.Model:
    """CRNN (Choi, Fazekas, Sandler and Cho, ICASSP 2017, fig. 1e): 4 conv layers then 2 GRU layers.

    3x3 'same' ConvUnits pooled (2x2)-(3x3)-(4x4)-(4x4) reduce the 96 bands to one row; the
    remaining time steps (b, 14, 192) are summarised by two stacked GRUs whose last state
    is the embedding. About 0.98M parameters.
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = input_normalization(inputs)
    for i, (width, pool) in enumerate(zip(widths, pools), start=1):
        x = conv_unit(x, width, (3, 3), pool, "same", batch_norm=True, name=f"unit{i}")
    x = layers.Reshape((-1, widths[-1]), name="to_sequence")(x)  # (b, 1 * time, channels)
    x = layers.GRU(gru_units, return_sequences=True, name="gru1")(x)
    x = layers.GRU(gru_units, name="gru2")(x)
    return _tagger(inputs, x, n_tags, "crnn")


@keras.saving.register_keras_serializable(package="musictag")
def keras1_hard_sigmoid(x):
    """Keras 1's hard sigmoid, clip(0.2 x + 0.5, 0, 1), the GRU gates' activation that Choi et al.'s MSD
    weights were trained with; Keras 3's hard_sigmoid is relu6(x + 3) / 6, which moves the outputs by ~0.06."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def per_frame_normalization(inputs, name: str = "bn_0_freq"):
    """The input batch norm of Choi et al.'s published taggers: one mean and variance per time frame (axis
    2), as their Keras 1 code normalised (its layer is called "freq", but its statistics have one entry a frame)."""
    return layers.BatchNormalization(axis=2, name=name)(inputs)


def build_msd_crnn(n_tags: int = 50, n_mels: int = 96, n_frames: int = 1366, widths=(64, 128, 128, 128),
                   pools=((2, 2), (3, 3), (4, 4), (4, 4)), gru_units: int = 32, dropout: float = 0.1,
                   dropout_top: float = 0.3) -> keras.Model:
    """MusicTaggerCRNN, layer for layer as Choi, Fazekas, Sandler and Cho published it with their MSD weights
    (ICASSP 2017; keunwoochoi/music-auto_tagging-keras), so those weights load into it (musictag.pretrained).

    Time is zero-padded to a multiple of the pools' product (1366 -> 1440 frames, 37 each side), batch-normalised
    per frame, then 3x3 'same' ConvUnits pooled (2x2)-(3x3)-(4x4)-(4x4), each with dropout, leave one row of
    15 steps; two GRUs (Keras 1's: gates before the reset product, hard sigmoid) give the 32-d embedding.
    396,786 trainable parameters with the defaults, as its author counts them.
    Shapes: (b, 96, 1366, 1) -> (b, 96, 1440, 1) -> (b, 48, 720, 64) -> (b, 16, 240, 128) -> (b, 4, 60, 128)
    -> (b, 1, 15, 128) -> (b, 15, 128) -> (b, 15, 32) -> (b, 32) -> (b, n_tags).
    """
    frames_per_step = math.prod(pool[1] for pool in pools)
    padding = -n_frames % frames_per_step
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = layers.ZeroPadding2D(((0, 0), (padding // 2, padding - padding // 2)), name="pad_time")(inputs)
    x = per_frame_normalization(x)
    for i, (width, pool) in enumerate(zip(widths, pools), start=1):
        x = conv_unit(x, width, (3, 3), pool, "same", batch_norm=True, name=f"unit{i}")
        x = layers.Dropout(dropout, name=f"unit{i}_dropout")(x)
    x = layers.Reshape((-1, widths[-1]), name="to_sequence")(x)  # (b, rows * steps, channels); rows is 1 at 96 bands
    for i, last in ((1, False), (2, True)):
        x = layers.GRU(gru_units, return_sequences=not last, reset_after=False,
                       recurrent_activation=keras1_hard_sigmoid, name=f"gru{i}")(x)
    x = layers.Dropout(dropout_top, name="dropout_top")(x)
    return _tagger(inputs, x, n_tags, "msd_crnn")


def build_msd_cnn(n_tags: int = 50, n_mels: int = 96, n_frames: int = 1366, widths=(32, 128, 128, 192, 256),
                  pools=((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))) -> keras.Model:
    """MusicTaggerCNN, as Choi, Fazekas and Sandler published it with their MSD weights (ISMIR 2016): the input
    batch-normalised per time frame, five 3x3 'same' ConvUnits pooled down to one pixel of 256 maps (the
    embedding), sigmoid outputs. 865,950 trainable parameters with the defaults, as its author counts them.
    Shapes: (b, 96, 1366, 1) -> (b, 48, 341, 32) -> (b, 24, 85, 128) -> (b, 12, 21, 128) -> (b, 4, 4, 192)
    -> (b, 1, 1, 256) -> (b, 256) -> (b, n_tags).
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = per_frame_normalization(inputs)
    for i, (width, pool) in enumerate(zip(widths, pools), start=1):
        x = conv_unit(x, width, (3, 3), pool, "same", batch_norm=True, name=f"unit{i}")
    x = layers.Flatten(name="flatten")(x)
    return _tagger(inputs, x, n_tags, "msd_cnn")


def residual_block(x, filters: int, name: str):
    """Won et al.'s block (their Res_2d): 3x3 convolution with stride 2 -> BN -> ReLU -> 3x3 convolution -> BN,
    plus a shortcut of a stride-2 3x3 convolution -> BN (the shapes always differ: the block halves both
    axes), then ReLU of the sum. The stride-2 convolutions pad one row and column on each side, as PyTorch's
    padding=1 does ('same' would pad after only), so they sample the grid the reference samples."""
    def halving_conv(inputs, suffix: str):
        padded = layers.ZeroPadding2D(1, name=f"{name}_{suffix}_pad")(inputs)
        return layers.Conv2D(filters, 3, strides=2, name=f"{name}_{suffix}")(padded)

    shortcut = layers.BatchNormalization(axis=-1, name=f"{name}_shortcut_bn")(halving_conv(x, "shortcut"))
    x = layers.BatchNormalization(axis=-1, name=f"{name}_bn1")(halving_conv(x, "conv1"))
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(axis=-1, name=f"{name}_bn2")(x)
    return layers.Activation("relu", name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, shortcut]))


def build_short_resnet(n_tags: int, n_mels: int, n_frames: int, widths=(128, 128, 256, 256, 256, 256, 512),
                       dense_units: int = 512, dropout: float = 0.5) -> keras.Model:
    """Short-chunk CNN with residual connections (Won, Ferraro, Bogdanov and Serra, "Evaluation of CNN-based
    automatic music tagging models", SMC 2020; their ShortChunkCNN_Res).

    The spectrogram batch-normalised as one channel, then `residual_block`s of `widths` maps, each halving both
    axes (no max pooling), a global max pool over what is left (7 halvings bring 96 or 128 mel bands to one
    row, so over time), then a dense ReLU layer of `dense_units` with batch norm and dropout before the
    sigmoid outputs. About 12.1M parameters with the defaults. Won et al. feed 128-mel 3.69 s chunks and
    average the chunks' predictions; here the builder takes whatever n_mels x n_frames the shards hold.
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = layers.BatchNormalization(axis=-1, name="input_norm")(inputs)  # their spec_bn: one mean and variance
    for i, width in enumerate(widths, start=1):
        x = residual_block(x, width, name=f"block{i}")
    x = layers.GlobalMaxPooling2D(name="global_max")(x)
    x = layers.Dense(dense_units, name="dense")(x)
    x = layers.BatchNormalization(axis=-1, name="dense_bn")(x)
    x = layers.Activation("relu", name="dense_relu")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return _tagger(inputs, x, n_tags, "short_resnet")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "k2c1": build_k2c1,
    "k1c2": build_k1c2,
    "k2c2": build_k2c2,
    "crnn": build_crnn,
    "short_resnet": build_short_resnet,
    "msd-crnn": build_msd_crnn,
    "msd-cnn": build_msd_cnn,
}


def build_model(name: str, n_tags: int, n_mels: int, n_frames: int, **hyperparameters) -> keras.Model:
    """The model registered as `name`; an unknown name fails at once, listing the known ones."""
    if name not in MODELS:
        raise MusictagError(f"model: unknown architecture '{name}'; known: {', '.join(MODELS)}")
    try:
        return MODELS[name](n_tags=n_tags, n_mels=n_mels, n_frames=n_frames, **hyperparameters)
    except ValueError as err:  # e.g. n_mels too small for the pooling the architecture needs
        raise MusictagError(f"model: {name} cannot take input {n_mels}x{n_frames}: {str(err).splitlines()[0]}") from None
