"""The CNN taggers, as Keras 3 builder functions over `keras.layers` and `keras.ops` only.

Every model maps a log-mel spectrogram batch (batch, n_mels, n_frames, 1) to tag probabilities
(batch, n_tags) through sigmoid outputs, and names its penultimate layer "embedding" so predictions
and embeddings come from one forward pass. No `tf.` call appears here, so the same model runs under
the JAX or PyTorch backend. Pick one by name from MODELS.
"""
from __future__ import annotations

import functools
from typing import Callable

import keras
from keras import layers

from musictag.errors import MusictagError


def conv2d(filters: int, kernel, padding: str, name: str) -> layers.Conv2D:
    """A plain keras.layers.Conv2D (stride 1) that computes the same thing faster (`convolution`): same weights,
    config and values on every backend, so a saved model is a standard Keras model that loads anywhere."""
    return speed_up(layers.Conv2D(filters, kernel, padding=padding, name=name))


def speed_up(layer: keras.Layer) -> keras.Layer:
    """`layer` computing faster where this module knows how: a stride-1 channels_last Conv2D through
    `convolution`, a BatchNormalization through `normalization`; any other layer as it is. The builders call it
    on their layers; `with_speed_ups` on a model loaded from a .keras file, whose layers Keras made plain."""
    if (isinstance(layer, layers.Conv2D) and layer.strides == (1, 1) and layer.dilation_rate == (1, 1)
            and layer.groups == 1 and layer.data_format == "channels_last"
            and not isinstance(layer.convolution_op, functools.partial)):
        layer.convolution_op = functools.partial(convolution, layer, layer.convolution_op)
    elif isinstance(layer, layers.BatchNormalization) and not isinstance(layer.call, functools.partial):
        layer.call = functools.partial(normalization, layer, layer.call)
    return layer


def with_speed_ups(model: keras.Model) -> keras.Model:
    """`model`, loaded from a .keras file to train on (a finished run continued), with every layer `speed_up`."""
    for layer in model.layers:
        speed_up(layer)
    return model


def convolution(layer: layers.Conv2D, plain_op, inputs, kernel):
    """layer.convolution_op(inputs, kernel) for a stride-1 channels_last Conv2D, two ways faster:

    - Folding, every backend: a 'valid' kernel as tall as its input (k2c1's unit1: 96x4 over the 96 mel
      bands, one input channel) is the 1x4 convolution of the bands folded into channels: the same sums,
      but forward and backward take 0.05 s a step at batch 16 on TensorFlow instead of 0.1 s (TF's default
      kernels) or 0.4 s (oneDNN's input gradient), and 0.04 s instead of 4 s at batch 8 on JAX's CPU build.
    - On TensorFlow, the kernel gradient as matmuls where musictag.model.onednn says it pays (a CPU).
    """
    ops = keras.ops
    (kh, kw), (height, width, channels) = layer.kernel_size, tuple(inputs.shape[1:])
    if None in (height, width, channels):  # the folding and the taps need static sizes
        return plain_op(inputs, kernel)
    if layer.padding == "valid" and kh == height > 1:  # (b, h, w, c) * (h, kw, c, o) -> (b, 1, w, h*c) * (1, kw, h*c, o)
        inputs = ops.reshape(ops.transpose(inputs, (0, 2, 1, 3)), (-1, 1, width, height * channels))
        kernel = ops.reshape(ops.transpose(kernel, (1, 0, 2, 3)), (1, kw, height * channels, layer.filters))
        kh = 1
    if keras.backend.backend() == "tensorflow":
        from musictag.model import onednn as tf_speed

        output_bytes = inputs.shape[1] * inputs.shape[2] * layer.filters * 4  # per example, at most; float32
        if tf_speed.applies(kh * kw, output_bytes):
            return tf_speed.conv_with_matmul_kernel_gradient(inputs, ops.copy(kernel), (kh, kw), layer.padding,
                                                             layer.name)
    return ops.conv(inputs, kernel, strides=1, padding=layer.padding)


def batch_normalization(axis: int, name: str) -> layers.BatchNormalization:
    """A plain keras.layers.BatchNormalization that trains faster on TensorFlow (`normalization`):
    same weights, config and values, so a saved model is a standard Keras model."""
    return speed_up(layers.BatchNormalization(axis=axis, name=name))


def normalization(layer: layers.BatchNormalization, plain_call, inputs, training=None, mask=None):
    """layer.call(inputs, training, mask); in training on TensorFlow, over the channels of a 4-D tensor, as
    musictag.model.onednn.batch_norm: Keras' own is a dozen separate ops, each a pass over the tensor, which cost k2c2
    ~1.7 s of a 3.1 s step at batch 16 on a CPU."""
    if training and mask is None and keras.backend.backend() == "tensorflow":
        from musictag.model import onednn as tf_speed

        if tf_speed.batch_norm_applies(layer, inputs):
            return tf_speed.batch_norm(layer, inputs)
    return plain_call(inputs, training=training, mask=mask)


def input_normalization(inputs, name: str = "input_norm"):
    """Batch-normalise each mel band (Choi et al.'s code normalises the input along frequency)."""
    return batch_normalization(axis=1, name=name)(inputs)


def conv_unit(x, filters: int, kernel: tuple[int, int], pool: tuple[int, int] | None, padding: str,
              batch_norm: bool, name: str):
    """Dissertation section 3.2.2: convolution -> batch norm -> ELU -> max pooling."""
    x = conv2d(filters, kernel, padding, name=f"{name}_conv")(x)
    if batch_norm:
        x = batch_normalization(axis=-1, name=f"{name}_bn")(x)
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
    Then two dense ELU layers of `dense_units`. About 1.08M parameters with the defaults.
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


def residual_block(x, filters: int, name: str):
    """Won et al.'s short-chunk ResNet block: two 3x3 conv + BN, a projected shortcut, ReLU, 2x2 pool."""
    shortcut = conv2d(filters, 1, "same", name=f"{name}_proj")(x)
    shortcut = batch_normalization(axis=-1, name=f"{name}_proj_bn")(shortcut)
    x = conv2d(filters, 3, "same", name=f"{name}_conv1")(x)
    x = batch_normalization(axis=-1, name=f"{name}_bn1")(x)
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    x = conv2d(filters, 3, "same", name=f"{name}_conv2")(x)
    x = batch_normalization(axis=-1, name=f"{name}_bn2")(x)
    x = layers.Activation("relu", name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, shortcut]))
    return layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)  # 96 mels: 7 halvings reach 1


def build_short_resnet(n_tags: int, n_mels: int, n_frames: int, n_blocks: int = 7,
                       filters: int = 128, dense_units: int = 256, dropout: float = 0.5) -> keras.Model:
    """Short-chunk ResNet (Won, Ferraro, Bogdanov and Serra, 2020, table 2's strongest simple model).

    Seven residual blocks each halve both axes; global max pooling over what is left, then a dense
    ReLU layer with batch norm and dropout (about 2.1M parameters with 128 channels, as in the
    paper). Won et al. train on 3.69 s chunks and average chunk
    predictions; here the whole 29.12 s input goes through once and the max-pool covers it.
    """
    inputs = keras.Input((n_mels, n_frames, 1), name="logmel")
    x = input_normalization(inputs)
    for i in range(1, n_blocks + 1):
        x = residual_block(x, filters, name=f"block{i}")
    x = layers.GlobalMaxPooling2D(name="global_max")(x)
    x = layers.Dense(dense_units, name="dense")(x)
    x = batch_normalization(axis=-1, name="dense_bn")(x)
    x = layers.Activation("relu", name="dense_relu")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return _tagger(inputs, x, n_tags, "short_resnet")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "k2c1": build_k2c1,
    "k1c2": build_k1c2,
    "k2c2": build_k2c2,
    "crnn": build_crnn,
    "short_resnet": build_short_resnet,
}


def build_model(name: str, n_tags: int, n_mels: int, n_frames: int, **hyperparameters) -> keras.Model:
    """The model registered as `name`; an unknown name fails at once, listing the known ones."""
    if name not in MODELS:
        raise MusictagError(f"model: unknown architecture '{name}'; known: {', '.join(MODELS)}")
    try:
        return MODELS[name](n_tags=n_tags, n_mels=n_mels, n_frames=n_frames, **hyperparameters)
    except ValueError as err:  # e.g. n_mels too small for the pooling the architecture needs
        raise MusictagError(f"model: {name} cannot take input {n_mels}x{n_frames}: {str(err).splitlines()[0]}") from None
