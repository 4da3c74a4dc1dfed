"""The architectures match the dissertation's tables 3.2-3.7 layer by layer."""
import keras
import pytest

from musictag.model import architectures as models

from musictag.model import onednn as tf_speed
from musictag.errors import MusictagError
from musictag.model.architectures import MODELS, build_model

# (layer name, output shape without batch, trainable parameters or None) from tables 3.2-3.7
K2C1 = [("unit1_elu", (1, 1363, 152), None), ("unit1_conv", (1, 1363, 152), 58520),
        ("unit2_conv", (1, 1360, 152), 92568), ("unit2_pool", (1, 340, 152), None),
        ("unit3_conv", (1, 337, 152), 92568), ("unit3_pool", (1, 84, 152), None),
        ("unit4_conv", (1, 81, 304), 185136), ("unit4_pool", (1, 20, 304), None),
        ("unit5_conv", (1, 17, 304), 369968), ("unit5_pool", (1, 4, 304), None),
        ("flatten", (1216,), None), ("dense1", (304,), 369968), ("dense2", (304,), 92720), ("output", (50,), 15250)]
K1C2 = [("unit1_conv", (96, 1366, 47), 235), ("unit1_pool", (96, 341, 47), None),
        ("unit2_conv", (96, 341, 47), 8883), ("unit2_pool", (96, 68, 47), None),
        ("unit3_conv", (96, 68, 95), 17955), ("unit3_pool", (96, 8, 95), None),
        ("unit4_conv", (96, 8, 95), 36195), ("unit4_pool", (96, 1, 95), None),
        ("flatten", (9120,), None), ("dense1", (95,), 866495), ("dense2", (95,), 9120), ("output", (50,), 4800)]
K2C2 = [("unit1_conv", (96, 1366, 67), 670), ("unit1_pool", (48, 341, 67), None),
        ("unit2_conv", (48, 341, 135), 81540), ("unit2_pool", (24, 85, 135), None),
        ("unit3_conv", (24, 85, 135), 164160), ("unit3_pool", (12, 21, 135), None),
        ("unit4_conv", (12, 21, 203), 246848), ("unit4_pool", (4, 4, 203), None),
        ("unit5_conv", (4, 4, 271), 495388), ("unit5_pool", (1, 1, 271), None),
        ("flatten", (271,), None),
        ("output", (50,), 13550 + 50)]  # the seed's 13,550 leaves out the output layer's 50 biases


@pytest.mark.parametrize("name, table", [("k2c1", K2C1), ("k1c2", K1C2), ("k2c2", K2C2)])
def test_layers_match_the_seed_tables(name, table):
    model = build_model(name, n_tags=50, n_mels=96, n_frames=1366)
    for layer_name, shape, parameters in table:
        layer = model.get_layer(layer_name)
        assert tuple(layer.output.shape[1:]) == shape, layer_name
        if parameters is not None:
            assert layer.count_params() == parameters, layer_name
    convs_and_dense = sum(p for _, _, p in table if p)
    assert 0.9e6 < convs_and_dense < 1.3e6  # "approximately 1M parameters"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_outputs_sigmoid_tags_and_an_embedding(name):
    model = build_model(name, n_tags=45, n_mels=96, n_frames=1366)
    assert tuple(model.output.shape) == (None, 45)
    assert model.get_layer("output").activation.__name__ == "sigmoid"
    assert len(model.get_layer("embedding").output.shape) == 2
    assert 0.4e6 < model.count_params() < 2.5e6


def test_builders_honour_their_width_arguments():
    model = build_model("k2c2", n_tags=10, n_mels=96, n_frames=1366, widths=(8, 16, 16, 24, 32))
    assert model.get_layer("unit5_conv").output.shape[-1] == 32
    assert model.get_layer("output").count_params() == 32 * 10 + 10


def test_unknown_model_lists_known_ones():
    with pytest.raises(MusictagError, match="k2c1, k1c2, k2c2, crnn, short_resnet"):
        build_model("vgg", n_tags=50, n_mels=96, n_frames=1366)


def test_input_too_small_for_the_architecture_is_one_clear_error():
    with pytest.raises(MusictagError, match="k2c2 cannot take input 16x1366"):
        build_model("k2c2", n_tags=50, n_mels=16, n_frames=1366)


@pytest.mark.parametrize("kernel, padding, input_shape", [
    ((6, 4), "valid", (6, 20, 1)),   # as tall as its input: folded into a 1x4 convolution (k2c1's unit1)
    ((3, 3), "same", (8, 12, 5)),    # k2c2's kernels, matmul kernel gradient taps side by side (few channels)
    ((3, 3), "same", (7, 9, 16)),    # one matmul per tap; odd sizes test TF's SAME padding split
    ((1, 4), "same", (5, 16, 3)),    # k1c2's kernels
    ((1, 1), "same", (4, 6, 8)),     # short_resnet's projection
    ((3, 3), "same", (7, 9, 1)),     # k2c2's unit1: one input channel, the input gradient as one matmul
    ((1, 4), "same", (5, 16, 1)),    # k1c2's unit1
    ((2, 4), "same", (5, 9, 1)),     # even kernels: TF's SAME split on both axes
])
def test_conv2d_gives_the_plain_keras_values_and_gradients(monkeypatch, kernel, padding, input_shape):
    """models.conv2d's faster TensorFlow paths compute what keras.layers.Conv2D computes, forward and backward."""
    import numpy as np
    import tensorflow as tf

    monkeypatch.setattr(tf_speed, "matmul_gradient_engages", lambda: True)  # take the matmul gradient path
    fast, plain = models.conv2d(7, kernel, padding, name="fast"), keras.layers.Conv2D(7, kernel, padding=padding)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, *input_shape)), tf.float32)
    fast.build(x.shape), plain.build(x.shape)
    plain.set_weights(fast.get_weights())
    results = []
    for layer in (fast, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(y))  # an upstream gradient that differs per element
        results.append([y, *tape.gradient(loss, [x, layer.kernel, layer.bias])])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("on_cpu", [True, False], ids=["a CPU", "a GPU"])
@pytest.mark.parametrize("input_shape, axis, by_matmul_on_a_cpu", [
    ((3, 4, 5, 6), -1, True),    # conv_unit's: 60 values a channel (the fused op's Bessel 60/59)
    ((2, 1, 3, 4), -1, True),    # 6 values a channel: the fused op's variance correction shows
    ((2, 3, 5, 7), -1, True),    # 7 channels, as k2c2's 67 are not a multiple of 8
    ((2, 3, 5, 8), -1, False),   # 8 channels, as crnn's 96: oneDNN's fused op
    ((3, 4, 5, 1), 1, False),    # input_normalization's, per mel band: Keras' own
    ((3, 7), -1, False),         # short_resnet's dense_bn: Keras' own
])
def test_batch_norm_trains_as_the_plain_keras_layer(monkeypatch, input_shape, axis, by_matmul_on_a_cpu, on_cpu):
    """models.batch_normalization's TensorFlow paths (matmul sums on a CPU, the fused op): the same outputs,
    gradients and moving statistics as keras.layers.BatchNormalization, in training and inference."""
    import numpy as np
    import tensorflow as tf

    monkeypatch.setattr(tf_speed, "matmul_gradient_engages", lambda: on_cpu)
    by_matmul = []
    monkeypatch.setattr(tf_speed, "normalize_by_matmul",
                        lambda *args, plain=tf_speed.normalize_by_matmul: by_matmul.append(1) or plain(*args))
    fast, plain = models.batch_normalization(axis, name="fast"), keras.layers.BatchNormalization(axis=axis)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, size=input_shape), tf.float32)
    fast.build(x.shape), plain.build(x.shape)
    fast.set_weights([rng.normal(1.0, 0.3, w.shape) for w in fast.get_weights()[:2]] + fast.get_weights()[2:])
    plain.set_weights(fast.get_weights())
    results = []
    for layer in (fast, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))  # an upstream gradient that differs per element
        results.append([y, *tape.gradient(loss, [x, layer.gamma, layer.beta]), layer.moving_mean,
                        layer.moving_variance, layer(x, training=False)])
    for got, expected in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
    assert bool(by_matmul) is (on_cpu and by_matmul_on_a_cpu)


@pytest.mark.parametrize("gpu, user_set, switched_on", [
    (False, None, True),    # a CPU-only machine: oneDNN on
    (True, None, False),    # an NVIDIA GPU: TensorFlow's defaults (cuDNN), no switch set
    (False, "0", False),    # the user's choice stands
    (True, "1", True),
])
def test_the_cpu_speed_ups_stay_off_where_a_gpu_is_used(monkeypatch, gpu, user_set, switched_on):
    monkeypatch.setattr(tf_speed, "nvidia_gpu_visible", lambda: gpu)
    environ = {} if user_set is None else {tf_speed.ONEDNN_SWITCH: user_set}
    assert tf_speed.switch_on_onednn(environ) is switched_on
    assert (tf_speed.ONEDNN_SWITCH in environ) is (not gpu or user_set is not None)

    monkeypatch.setenv(tf_speed.ONEDNN_SWITCH, "1")
    devices = ["gpu:0", "cpu:0"] if gpu else ["cpu:0"]
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: devices)
    tf_speed.matmul_gradient_engages.cache_clear()
    try:
        assert tf_speed.matmul_gradient_engages() is (not gpu)
    finally:
        tf_speed.matmul_gradient_engages.cache_clear()


def test_cuda_visible_devices_can_hide_the_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not tf_speed.nvidia_gpu_visible()
