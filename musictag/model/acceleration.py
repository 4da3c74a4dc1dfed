"""Faster training for the plain Keras models of musictag.model.architectures, through one call: `accelerate`.

It swaps, on each layer object, how a layer computes, never what: the weights, the config, the saved `.keras`
file and the values (to float32 rounding; tests/test_models.py compares values and gradients with Keras' own)
stay those of the plain layer, so a model trained accelerated loads and predicts anywhere as a standard one.
Why a patch on the objects rather than subclasses: a subclass would be saved under its own name, and a
`.keras` file would then need this package to load.

- A stride-1 channels_last Conv2D (`convolution`): a 'valid' kernel as tall as its input (k2c1's first) becomes
  the 1xW convolution of the rows folded into channels, on every backend; on TensorFlow, the kernel gradient as
  matmuls where musictag.model.onednn says it pays.
- A BatchNormalization (`normalization`): in training on TensorFlow, musictag.model.onednn.batch_norm.
"""
from __future__ import annotations

import functools

import keras
from keras import layers


def accelerate(model: keras.Model) -> keras.Model:
    """`model` with every layer this module knows how to speed up patched to compute faster; idempotent.
    Patches live on the layer objects, not in a saved file: apply it to every model built or loaded to train."""
    for layer in model.layers:
        if (isinstance(layer, layers.Conv2D) and layer.strides == (1, 1) and layer.dilation_rate == (1, 1)
                and layer.groups == 1 and layer.data_format == "channels_last"
                and not isinstance(layer.convolution_op, functools.partial)):
            layer.convolution_op = functools.partial(convolution, layer, layer.convolution_op)
        elif isinstance(layer, layers.BatchNormalization) and not isinstance(layer.call, functools.partial):
            layer.call = functools.partial(normalization, layer, layer.call)
    return model


def convolution(layer: layers.Conv2D, plain_op, inputs, kernel):
    """layer.convolution_op(inputs, kernel) for a stride-1 channels_last Conv2D, two ways faster:

    - Folding, every backend: a 'valid' kernel as tall as its input (k2c1's unit1: 96x4 over the 96 mel
      bands, one input channel) is the 1x4 convolution of the bands folded into channels: the same sums,
      in kernels that every backend runs far faster than the full-height one.
    - On TensorFlow, the kernel gradient as matmuls where musictag.model.onednn.applies says it pays (a CPU).
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
        from musictag.model import onednn

        output_bytes = inputs.shape[1] * inputs.shape[2] * layer.filters * 4  # per example, at most; float32
        if onednn.applies(kh * kw, output_bytes):
            return onednn.conv_with_matmul_kernel_gradient(inputs, ops.copy(kernel), (kh, kw), layer.padding,
                                                           layer.name)
    return ops.conv(inputs, kernel, strides=1, padding=layer.padding)


def normalization(layer: layers.BatchNormalization, plain_call, inputs, training=None, mask=None):
    """layer.call(inputs, training, mask); in training on TensorFlow, where musictag.model.onednn.batch_norm
    applies (a 4-D tensor over its channels), through it: Keras' own is a dozen separate ops, each a pass over
    the tensor."""
    if training and mask is None and keras.backend.backend() == "tensorflow":
        from musictag.model import onednn

        if onednn.batch_norm_applies(layer, inputs):
            return onednn.batch_norm(layer, inputs)
    return plain_call(inputs, training=training, mask=mask)
