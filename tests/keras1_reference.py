"""An independent float64 forward pass of Choi et al.'s published taggers, straight from their Keras 1 HDF5
files with numpy: what Keras 1 computed, written from the layer equations, to check musictag.pretrained's
conversion against. Channels first, one example at a time: (1, 96, 1366) log-mel dB -> 50 probabilities."""
from __future__ import annotations

import h5py
import numpy as np

KERAS1_BN_EPSILON = 1e-3


class Keras1File:
    """The arrays of one weights file, looked up by layer and by what the array's name ends with."""

    def __init__(self, path):
        with h5py.File(path, "r") as file:
            self.arrays = {(layer, key.split(":")[0]): np.asarray(group[key], np.float64)
                           for layer, group in file.items() for key in group}

    def __call__(self, layer: str, role: str) -> np.ndarray:
        (found,) = [v for (name, key), v in self.arrays.items() if name == layer and key.removesuffix("_1").endswith(role)]
        return found


def batch_norm(weights: Keras1File, x, layer: str, axis: int, variance_stored: bool):
    """Keras >= 1.1: (x - mean) / sqrt(var + eps); Keras 1.0.6 stored the standard deviation instead."""
    shape = [1] * x.ndim
    shape[axis] = -1
    mean, spread, gamma, beta = (weights(layer, role).reshape(shape) for role in ("running_mean", "running_std", "gamma", "beta"))
    variance = spread if variance_stored else spread ** 2
    return (x - mean) / np.sqrt(variance + KERAS1_BN_EPSILON) * gamma + beta


def conv3x3_same(weights: Keras1File, x, layer: str):
    kernel, bias = weights(layer, "_W"), weights(layer, "_b")  # (out, in, 3, 3), TensorFlow's convention: not flipped
    _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = sum(np.einsum("oc,chw->ohw", kernel[:, :, i, j], padded[:, i:i + height, j:j + width])
              for i in range(3) for j in range(3))
    return out + bias[:, None, None]


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def max_pool(x, rows: int, columns: int):
    channels, height, width = x.shape
    h, w = height // rows, width // columns
    return x[:, :h * rows, :w * columns].reshape(channels, h, rows, w, columns).max(axis=(2, 4))


def gru(weights: Keras1File, sequence, layer: str):
    """Keras 1's GRU: z and r through its hard sigmoid clip(0.2 x + 0.5, 0, 1), r applied before U_h."""
    hard_sigmoid = lambda v: np.clip(0.2 * v + 0.5, 0, 1)  # noqa: E731
    W, U, b = ({gate: weights(layer, f"{kind}_{gate}") for gate in "zrh"} for kind in "WUb")
    h = np.zeros(U["z"].shape[0])
    states = []
    for x in sequence:
        z = hard_sigmoid(x @ W["z"] + h @ U["z"] + b["z"])
        r = hard_sigmoid(x @ W["r"] + h @ U["r"] + b["r"])
        h = z * h + (1 - z) * np.tanh(x @ W["h"] + (r * h) @ U["h"] + b["h"])
        states.append(h)
    return np.array(states)


def sigmoid_output(weights: Keras1File, features):
    return 1 / (1 + np.exp(-(features @ weights("output", "_W") + weights("output", "_b"))))


def crnn(weights: Keras1File, x):
    """MusicTaggerCRNN: (1, 96, 1366) -> (50,) probabilities, (32,) last GRU state."""
    x = batch_norm(weights, np.pad(x, ((0, 0), (0, 0), (37, 37))), "bn_0_freq", axis=2, variance_stored=True)
    for i, pool in enumerate((2, 3, 4, 4), start=1):
        x = max_pool(elu(batch_norm(weights, conv3x3_same(weights, x, f"conv{i}"), f"bn{i}", 0, True)), pool, pool)
    sequence = x.transpose(2, 0, 1).reshape(x.shape[2], -1)  # Keras 1's Permute((3, 1, 2)) then Reshape((15, 128))
    state = gru(weights, gru(weights, sequence, "gru1"), "gru2")[-1]
    return sigmoid_output(weights, state), state


def cnn(weights: Keras1File, x):
    """MusicTaggerCNN with its stored standard deviations: (1, 96, 1366) -> (50,) probabilities, (256,) features."""
    x = batch_norm(weights, x, "bn_0_freq", axis=2, variance_stored=False)
    for i, pool in enumerate(((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)), start=1):
        x = max_pool(elu(batch_norm(weights, conv3x3_same(weights, x, f"conv{i}"), f"bn{i}", 0, False)), *pool)
    features = x.reshape(-1)
    return sigmoid_output(weights, features), features
