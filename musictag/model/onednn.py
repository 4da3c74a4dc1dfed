"""TensorFlow's speed-ups for the CNNs on a CPU, in one place, and when each engages (`tf.` is allowed here).

musictag.model.acceleration calls in here on the TensorFlow backend; the models stay plain Keras layers, with
the same weights, saved `.keras` file and values (tests/test_models.py compares values and gradients with
Keras' own): only TensorFlow's ops change. docs/performance.md gives the measurements behind each choice;
benchmarks/train_speed.py and torch_k2c2.py take them.

- oneDNN (`switch_on_onednn`): TensorFlow leaves its oneDNN kernels off on CPUs without AVX-512; switched on
  by musictag.model.engines.select_backend, unless the user set TF_ENABLE_ONEDNN_OPTS or an NVIDIA GPU is
  visible (there the kernels are cuDNN's).
- Matmul kernel gradient (`conv_with_matmul_kernel_gradient`, where `applies`: oneDNN on, no GPU, kernels of at
  most 9 taps, outputs of at most MATMUL_GRADIENT_MAX_BYTES per example): oneDNN's Conv2DBackpropFilter on TF's
  plain NHWC tensors is slow; per tap the kernel gradient is x_tap^T @ dy with a long inner dimension, which
  oneDNN's GEMM runs at full speed. The input gradient stays TF's own Conv2DBackpropInput.
- Batch norm (`batch_norm`, every device): Keras 3's BatchNormalization trains through a dozen separate ops,
  each a pass over the layer's output. TensorFlow's FusedBatchNormV3 (`normalize_fused`) is two; on a CPU with
  oneDNN at channel counts not a multiple of 8, where oneDNN's fused kernels crawl, the per-channel sums are
  matmuls with a row of ones and the gradient is written out (`normalize_by_matmul`).
- One-channel input gradient (`input_gradient`, with the matmul kernel gradient): the first convolution's input
  has one channel, into which oneDNN's Conv2DBackpropInput is slow; as one matmul giving each tap's
  contribution, then their shifted sum, it is one pass over dy.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def nvidia_gpu_visible() -> bool:
    """Whether this process would see an NVIDIA GPU, told without importing TensorFlow (which reads the
    oneDNN switch as it loads): the driver lists its GPUs under /proc, and CUDA_VISIBLE_DEVICES may hide them."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def switch_on_onednn(environ=os.environ) -> bool:
    """Set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads, on a CPU-only machine and only if the user left it
    unset; return whether it is on. musictag.model.engines.select_backend calls it, for the stage scripts
    (TF logs a line saying so, which `musictag tag` need not print)."""
    if ONEDNN_SWITCH not in environ and not nvidia_gpu_visible():
        environ[ONEDNN_SWITCH] = "1"
    return environ.get(ONEDNN_SWITCH, "").strip().lower() in ("1", "true")


# The matmul kernel gradient allocates zero-padded copies of x and dy, the size of the layer's output (k2c2's
# unit1: 34 MiB per example); a layer whose output is larger keeps TF's own kernel gradient, to bound the memory.
MATMUL_GRADIENT_MAX_BYTES = 40 * 2**20


@functools.cache
def matmul_gradient_engages() -> bool:
    """oneDNN switched on (TF_ENABLE_ONEDNN_OPTS true, read as TensorFlow reads it, when it is imported) and
    no GPU among TensorFlow's devices: on a GPU the convolutions are cuDNN's, and the matmuls only add copies."""
    import keras

    switched_on = os.environ.get(ONEDNN_SWITCH, "").strip().lower() in ("1", "true")
    return switched_on and not any(device.startswith("gpu") for device in keras.distribution.list_devices())


def applies(taps: int, output_bytes: int) -> bool:
    """Whether a convolution of `taps` kernel taps and `output_bytes` per example takes the matmul kernel
    gradient (see the module docstring)."""
    return taps <= 9 and output_bytes <= MATMUL_GRADIENT_MAX_BYTES and matmul_gradient_engages()


def conv_with_matmul_kernel_gradient(inputs, kernel, kernel_size: tuple[int, int], padding: str, name: str):
    """ops.conv(inputs, kernel, padding=padding) (stride 1, NHWC) whose kernel gradient is kh*kw matmuls.

    With x zero-padded as the convolution pads it and dy zero-padded to the same (h, w) grid, both flattened
    to rows, tap (i, j) pairs row r of dy with row r + i * padded_width + j of x, so its kernel gradient is
    x_rows[offset:offset + rows]^T @ dy_rows (x_rows gets `max offset` zero rows more): a slice along the
    first axis, which TF aliases instead of copying when a row is a multiple of 64 bytes (16 channels).
    So with 96 to 512 channels (crnn, short_resnet) no tap copies x; dy, often wider, is never sliced.
    With few input channels (at most 64 across the taps: a first layer), x's taps are laid side by side on dy's
    grid instead, so dy is read once by one matmul and never padded.
    The input gradient is `input_gradient`'s.
    """
    import keras
    from keras import ops

    kh, kw = kernel_size

    @ops.custom_gradient
    def conv(x, w):
        def grad(*args, upstream=None):
            with keras.name_scope(f"{name}_grad"):
                return conv_grad(x, w, args[0] if upstream is None else upstream)

        return ops.conv(x, w, strides=1, padding=padding), grad

    def conv_grad(x, w, dy):
        dx = input_gradient(dy, w, padding)
        if padding == "same":  # TF's SAME split: the odd extra row/column goes after
            x = ops.pad(x, [[0, 0], [(kh - 1) // 2, kh // 2], [(kw - 1) // 2, kw // 2], [0, 0]])
        in_ch, out_ch = x.shape[-1], dy.shape[-1]
        if in_ch * kh * kw <= 64:  # few channels (unit1 has one): x's taps side by side on dy's grid, one matmul
            height, width = dy.shape[1:3]
            columns = ops.concatenate([x[:, i:i + height, j:j + width] for i in range(kh) for j in range(kw)], axis=-1)
            return dx, ops.reshape(ops.matmul(ops.transpose(ops.reshape(columns, (-1, kh * kw * in_ch))),
                                              ops.reshape(dy, (-1, out_ch))), (kh, kw, in_ch, out_ch))
        padded_width = x.shape[2]
        if (kh, kw) != (1, 1):
            dy = ops.pad(dy, [[0, 0], [0, kh - 1], [0, kw - 1], [0, 0]])
        x_rows, dy_rows = ops.reshape(x, (-1, in_ch)), ops.reshape(dy, (-1, out_ch))
        max_offset = (kh - 1) * padded_width + kw - 1
        if max_offset:
            x_rows = ops.pad(x_rows, [[0, max_offset], [0, 0]])
        offsets = [i * padded_width + j for i in range(kh) for j in range(kw)]
        x_taps = [x_rows[offset:offset - max_offset or None] for offset in offsets]  # as many rows as dy_rows
        taps = [ops.matmul(ops.transpose(x_tap), dy_rows) for x_tap in x_taps]
        return dx, ops.reshape(ops.stack(taps), (kh, kw, in_ch, out_ch))

    return conv(inputs, kernel)


def batch_norm_applies(layer, inputs) -> bool:
    """Whether `layer` (a keras BatchNormalization) can normalise `inputs` through `batch_norm`: a 4-D tensor
    normalised over its last axis, with scale and offset, no renorm or cross-replica statistics, and an
    epsilon the fused op accepts."""
    return (len(inputs.shape) == 4 and layer.axis in (-1, 3) and layer.scale and layer.center
            and not layer.renorm and not layer.synchronized and layer.epsilon >= 1.001e-5)


def batch_norm(layer, inputs):
    """What `layer`'s training-mode call computes and updates (Keras 3, batch_normalization.py): the output
    normalised by the batch's mean and biased variance over (batch, height, width), and the moving statistics
    moved toward them by (1 - momentum); in float32, cast to the layer's compute dtype as Keras does.
    On a CPU with oneDNN (`matmul_gradient_engages`) and a channel count not a multiple of 8, through
    `normalize_by_matmul`; elsewhere (a GPU: cuDNN's; crnn's 96 channels, where oneDNN's is the faster) through
    `normalize_fused`."""
    import tensorflow as tf

    x = tf.cast(inputs, tf.float32)
    gamma, beta = (tf.cast(variable, tf.float32) for variable in (layer.gamma, layer.beta))
    by_matmul = matmul_gradient_engages() and x.shape[-1] % 8 != 0
    normalize = normalize_by_matmul if by_matmul else normalize_fused
    y, mean, variance = normalize(x, gamma, beta, layer.epsilon)
    layer.moving_mean.assign(layer.moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
    layer.moving_variance.assign(layer.moving_variance * layer.momentum + variance * (1.0 - layer.momentum))
    return tf.cast(y, layer.compute_dtype)


def normalize_fused(x, gamma, beta, epsilon: float):
    """Batch norm in training, (y, mean, biased variance) over all axes but the last, as TensorFlow's
    FusedBatchNormV3. It hands back the variance with Bessel's correction n / (n - 1), which Keras does not apply
    to its moving variance, so it is taken off."""
    import tensorflow as tf

    y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    return y, mean, unbiased_variance * tf.maximum(n - 1.0, 0.0) / n


def normalize_by_matmul(x, gamma, beta, epsilon: float):
    """Batch norm in training, (y, mean, biased variance) over all axes but the last, every per-channel sum a
    matmul with a row of ones, and the gradient written out (statistics are not differentiated: they only feed
    the moving averages).

    oneDNN's FusedBatchNormV3 (`normalize_fused`) and its gradient run far below memory speed when the channels
    are not a multiple of 8, as none of k1c2's and k2c2's are (47, 67, 95, 135, ...). A ones-row matmul sums at
    memory speed for any width, so this is two sums forward, two backward, and the elementwise passes the formulas need:
      y = x * a + (beta - mean * a), a = gamma / sqrt(variance + epsilon)
      dx = a * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) / sqrt(variance + epsilon)
    with sum(dy * xhat) (the gradient of gamma) = (sum(dy * x) - mean * sum(dy)) / sqrt(variance + epsilon).
    """
    import tensorflow as tf

    channels = x.shape[-1]

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        rows = tf.reshape(x, (-1, channels))
        ones = tf.ones((1, tf.shape(rows)[0]), rows.dtype)
        n = tf.cast(tf.shape(rows)[0], rows.dtype)

        def channel_sums(values):  # (rows, channels) -> (channels,)
            return tf.matmul(ones, values)[0]

        mean = channel_sums(rows) / n
        variance = channel_sums(tf.math.squared_difference(rows, mean)) / n
        inverse_std = tf.math.rsqrt(variance + epsilon)
        scale = gamma * inverse_std

        def gradient(dy, *_):  # the statistics' upstream gradients are unused (see above)
            dy_sum = channel_sums(tf.reshape(dy, (-1, channels)))
            dy_xhat_sum = inverse_std * (channel_sums(tf.reshape(dy * x, (-1, channels))) - mean * dy_sum)
            x_coefficient = -scale * inverse_std * dy_xhat_sum / n  # dx = scale * dy + x_coefficient * x + offset
            offset = -scale * dy_sum / n - x_coefficient * mean
            return dy * scale + (x * x_coefficient + offset), dy_xhat_sum, dy_sum

        return (x * scale + (beta - mean * scale), mean, variance), gradient

    return normalize(x, gamma, beta)


def input_gradient(dy, kernel, padding: str):
    """The input gradient of a stride-1 NHWC convolution: TensorFlow's Conv2DBackpropInput, but for a 'same'
    convolution of a one-channel input, sum over taps (i, j) of (dy @ kernel[i, j, 0]) shifted back by the tap's
    offset: one matmul (taps x out_channels) @ dy^T, whose rows are the taps' planes, then kh * kw slices added."""
    from keras import ops

    kh, kw, in_channels, out_channels = kernel.shape
    if padding != "same" or in_channels != 1:
        return ops.conv_transpose(dy, kernel, strides=1, padding=padding)
    height, width = dy.shape[1:3]
    per_tap = ops.matmul(ops.reshape(kernel, (kh * kw, out_channels)), ops.transpose(ops.reshape(dy, (-1, out_channels))))
    per_tap = ops.reshape(per_tap, (kh * kw, -1, height, width))  # (taps, batch, height, width)
    # TF's SAME puts (k - 1) // 2 before: tap i of output row r reached input row r + i - (kh - 1) // 2
    per_tap = ops.pad(per_tap, [[0, 0], [0, 0], [kh // 2, (kh - 1) // 2], [kw // 2, (kw - 1) // 2]])
    dx = None
    for i in range(kh):
        for j in range(kw):
            plane = per_tap[i * kw + j, :, kh - 1 - i:kh - 1 - i + height, kw - 1 - j:kw - 1 - j + width]
            dx = plane if dx is None else dx + plane
    return ops.expand_dims(dx, -1)
