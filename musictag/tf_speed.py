"""TensorFlow's speed-ups for the CNNs on a CPU, in one place, and when each engages.

The models stay plain Keras layers (musictag.models.conv2d, which calls in here on the TensorFlow backend): same
weights, same saved `.keras` file, same values (tests/test_models.py compares values and gradients with Keras'
own); only TensorFlow's ops change.
benchmarks/train_speed.py and torch_k2c2.py measure them, --profile shows the ops.

- oneDNN (`switch_on_onednn`): TensorFlow leaves its oneDNN kernels off on CPUs without AVX-512; on, they
  train these CNNs 1.7x faster on an AVX2 CPU. Engages when training imports TensorFlow, unless the user
  set TF_ENABLE_ONEDNN_OPTS or an NVIDIA GPU is visible (there the kernels are cuDNN's).
- Matmul kernel gradient (`conv_with_matmul_kernel_gradient`, where `applies`: oneDNN on, no GPU):
  oneDNN's Conv2DBackpropFilter on TF's plain NHWC tensors is 3-5x slower than on the blocked layout
  PyTorch uses (k2c2's unit2: 2.1-4.9 s a step against 0.9 s); per tap the kernel gradient is
  x_tap^T @ dy with a long inner dimension, which oneDNN's GEMM runs at full speed. The input gradient
  stays TF's own Conv2DBackpropInput. Kernels of at most 9 taps; without oneDNN, TF's own kernel gradient
  is faster than these matmuls and is kept, and so it is for layers whose output is over
  MATMUL_GRADIENT_MAX_BYTES per example, as the matmuls need padded copies of x and dy.
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
    unset; return whether it is on. Only training calls it (TF logs a line saying so, which `musictag tag`
    need not print)."""
    if ONEDNN_SWITCH not in environ and not nvidia_gpu_visible():
        environ[ONEDNN_SWITCH] = "1"
    return environ.get(ONEDNN_SWITCH, "").strip().lower() in ("1", "true")


# The matmul kernel gradient allocates zero-padded copies of x and dy, the size of the layer's output: fine for
# k2c2's unit1 (34 MiB per example), too much for short_resnet's first block (64 MiB per example, 1 GiB at
# batch 16, on top of a ~12 GB peak); such layers keep TF's own kernel gradient.
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
    So with 96 or 128 channels (crnn, short_resnet) no tap copies x; dy, often wider, is never sliced.
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
        dx = ops.conv_transpose(dy, w, strides=1, padding=padding)  # TF's own Conv2DBackpropInput
        if padding == "same":  # TF's SAME split: the odd extra row/column goes after
            x = ops.pad(x, [[0, 0], [(kh - 1) // 2, kh // 2], [(kw - 1) // 2, kw // 2], [0, 0]])
        in_ch, out_ch = x.shape[-1], dy.shape[-1]
        padded_width = x.shape[2]
        if (kh, kw) != (1, 1):
            dy = ops.pad(dy, [[0, 0], [0, kh - 1], [0, kw - 1], [0, 0]])
        x_rows, dy_rows = ops.reshape(x, (-1, in_ch)), ops.reshape(dy, (-1, out_ch))
        max_offset = (kh - 1) * padded_width + kw - 1
        if max_offset:
            x_rows = ops.pad(x_rows, [[0, max_offset], [0, 0]])
        offsets = [i * padded_width + j for i in range(kh) for j in range(kw)]
        x_taps = [x_rows[offset:offset - max_offset or None] for offset in offsets]  # as many rows as dy_rows
        if in_ch * kh * kw <= 64:  # few channels (unit1 has one): one matmul over the taps side by side reads dy once
            return dx, ops.reshape(ops.matmul(ops.transpose(ops.concatenate(x_taps, axis=1)), dy_rows),
                                   (kh, kw, in_ch, out_ch))
        taps = [ops.matmul(ops.transpose(x_tap), dy_rows) for x_tap in x_taps]
        return dx, ops.reshape(ops.stack(taps), (kh, kw, in_ch, out_ch))

    return conv(inputs, kernel)
