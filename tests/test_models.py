"""The architectures match the dissertation's tables 3.2-3.7 layer by layer (and short_resnet Won et al.'s
published model), and musictag.model.acceleration computes what the plain layers compute."""
import functools

import keras
import numpy as np
import pytest

from musictag.errors import MusictagError
from musictag.model import onednn
from musictag.model.acceleration import accelerate
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


@pytest.mark.parametrize("name", ["k2c1", "k1c2", "k2c2", "crnn"])
def test_choi_et_als_models_have_about_1m_parameters(name):
    assert 0.9e6 < build_model(name, n_tags=50, n_mels=96, n_frames=1366).count_params() < 1.3e6


def test_k2c1_has_1_28m_parameters():
    assert round(build_model("k2c1", n_tags=50, n_mels=96, n_frames=1366).count_params() / 1e4) == 128


def test_short_resnet_is_won_et_als_model():
    """ShortChunkCNN_Res (minzwon/sota-music-tagging-models, training/model.py and modules.py' Res_2d) on its
    input, 128 mel bands of a 3.69 s chunk (59049 samples at 16 kHz, hop 256: 231 frames). Its PyTorch parameter
    count, written out from its layers below, equals this model's trainable weights exactly: PyTorch keeps
    BatchNorm's running statistics as buffers, not parameters, as Keras keeps them as non-trainable weights.
    Neither count depends on the input's size."""
    def conv(c_in, c_out):  # 3x3 weights and biases
        return 9 * c_in * c_out + c_out

    def res_2d(c_in, c_out):  # conv_1, conv_2 and the shortcut's conv_3, each with a BatchNorm2d (2 * c_out)
        return conv(c_in, c_out) + conv(c_out, c_out) + conv(c_in, c_out) + 3 * 2 * c_out

    widths = [128, 128, 256, 256, 256, 256, 512]
    reference = (2  # spec_bn: BatchNorm2d(1)
                 + sum(res_2d(c_in, c_out) for c_in, c_out in zip([1] + widths[:-1], widths))
                 + 512 * 512 + 512 + 2 * 512  # dense1 and bn (BatchNorm1d)
                 + 512 * 50 + 50)  # dense2: 50 tags
    assert reference == 12_104_244  # "about 12.1M"
    model = build_model("short_resnet", n_tags=50, n_mels=128, n_frames=231)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == reference
    assert tuple(model.get_layer("block7_add").output.shape) == (None, 1, 2, 512)  # 7 halvings: 128 x 231 -> 1 x 2
    assert model.get_layer("embedding").output.shape[-1] == 512
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]


def test_short_resnet_honours_its_hyperparameters():
    model = build_model("short_resnet", n_tags=10, n_mels=96, n_frames=1366, widths=(8, 16), dense_units=32,
                        dropout=0.25)
    assert tuple(model.get_layer("block2_add").output.shape) == (None, 24, 342, 16)  # ceil(n / 2) twice
    assert model.get_layer("dense").units == 32 and model.get_layer("dropout").rate == 0.25


def test_builders_honour_their_width_arguments():
    model = build_model("k2c2", n_tags=10, n_mels=96, n_frames=1366, widths=(8, 16, 16, 24, 32))
    assert model.get_layer("unit5_conv").output.shape[-1] == 32
    assert model.get_layer("output").count_params() == 32 * 10 + 10


def test_unknown_model_lists_known_ones():
    with pytest.raises(MusictagError, match="k2c1, k1c2, k2c2, crnn, short_resnet, msd-crnn, msd-cnn"):
        build_model("vgg", n_tags=50, n_mels=96, n_frames=1366)


def test_input_too_small_for_the_architecture_is_one_clear_error():
    with pytest.raises(MusictagError, match="k2c2 cannot take input 16x1366"):
        build_model("k2c2", n_tags=50, n_mels=16, n_frames=1366)


def accelerated(layer: keras.Layer, input_shape: tuple) -> keras.Layer:
    """`layer`, built for inputs of `input_shape` (without the batch), as `accelerate` leaves it in a model."""
    accelerate(keras.Sequential([keras.Input(input_shape), layer]))
    return layer


def test_accelerate_patches_what_it_can_once_and_saves_a_plain_model(tmp_path):
    """Idempotent; a stride-2 convolution (short_resnet's) and layers it does not know stay as they are; the
    saved file is the plain model's."""
    keras.utils.set_random_seed(0)
    model = build_model("short_resnet", n_tags=5, n_mels=16, n_frames=32, widths=(8, 8))
    plain_config = model.get_config()
    accelerate(model)
    patched = {layer.name: (layer.convolution_op if isinstance(layer, keras.layers.Conv2D) else layer.call)
               for layer in model.layers}
    assert accelerate(model) is model
    assert patched == {layer.name: (layer.convolution_op if isinstance(layer, keras.layers.Conv2D) else layer.call)
                       for layer in model.layers}
    assert isinstance(model.get_layer("block1_conv2").convolution_op, functools.partial)
    assert isinstance(model.get_layer("block1_bn1").call, functools.partial)
    assert not isinstance(model.get_layer("block1_conv1").convolution_op, functools.partial)  # stride 2
    assert not isinstance(model.get_layer("dense").call, functools.partial)
    assert model.get_config() == plain_config
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert not isinstance(loaded.get_layer("block1_conv2").convolution_op, functools.partial)
    x = np.random.default_rng(0).normal(size=(2, 16, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel, padding, input_shape", [
    ((6, 4), "valid", (6, 20, 1)),   # as tall as its input: folded into a 1x4 convolution (k2c1's unit1)
    ((3, 3), "same", (8, 12, 5)),    # k2c2's kernels, matmul kernel gradient taps side by side (few channels)
    ((3, 3), "same", (7, 9, 16)),    # one matmul per tap; odd sizes test TF's SAME padding split
    ((1, 4), "same", (5, 16, 3)),    # k1c2's kernels
    ((1, 1), "same", (4, 6, 8)),     # a 1x1 kernel: one tap
    ((3, 3), "same", (7, 9, 1)),     # k2c2's unit1: one input channel, the input gradient as one matmul
    ((1, 4), "same", (5, 16, 1)),    # k1c2's unit1
    ((2, 4), "same", (5, 9, 1)),     # even kernels: TF's SAME split on both axes
])
def test_accelerated_conv2d_gives_the_plain_keras_values_and_gradients(monkeypatch, kernel, padding, input_shape):
    """An accelerated Conv2D's faster TensorFlow paths compute what keras.layers.Conv2D computes, forward and
    backward."""
    import tensorflow as tf

    monkeypatch.setattr(onednn, "matmul_gradient_engages", lambda: True)  # take the matmul gradient path
    fast = accelerated(keras.layers.Conv2D(7, kernel, padding=padding, name="fast"), input_shape)
    plain = keras.layers.Conv2D(7, kernel, padding=padding)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, *input_shape)), tf.float32)
    plain.build(x.shape)
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
    ((3, 4, 5, 1), -1, True),    # short_resnet's input_norm: one channel
    ((3, 7), -1, False),         # short_resnet's dense_bn: Keras' own
])
def test_accelerated_batch_norm_trains_as_the_plain_keras_layer(monkeypatch, input_shape, axis, by_matmul_on_a_cpu,
                                                                on_cpu):
    """An accelerated BatchNormalization's TensorFlow paths (matmul sums on a CPU, the fused op): the same
    outputs, gradients and moving statistics as keras.layers.BatchNormalization, in training and inference."""
    import tensorflow as tf

    monkeypatch.setattr(onednn, "matmul_gradient_engages", lambda: on_cpu)
    by_matmul = []
    monkeypatch.setattr(onednn, "normalize_by_matmul",
                        lambda *args, plain=onednn.normalize_by_matmul: by_matmul.append(1) or plain(*args))
    fast = accelerated(keras.layers.BatchNormalization(axis=axis, name="fast"), input_shape[1:])
    plain = keras.layers.BatchNormalization(axis=axis)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, size=input_shape), tf.float32)
    plain.build(x.shape)
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
    monkeypatch.setattr(onednn, "nvidia_gpu_visible", lambda: gpu)
    environ = {} if user_set is None else {onednn.ONEDNN_SWITCH: user_set}
    assert onednn.switch_on_onednn(environ) is switched_on
    assert (onednn.ONEDNN_SWITCH in environ) is (not gpu or user_set is not None)

    monkeypatch.setenv(onednn.ONEDNN_SWITCH, "1")
    devices = ["gpu:0", "cpu:0"] if gpu else ["cpu:0"]
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: devices)
    onednn.matmul_gradient_engages.cache_clear()
    try:
        assert onednn.matmul_gradient_engages() is (not gpu)
    finally:
        onednn.matmul_gradient_engages.cache_clear()


def test_cuda_visible_devices_can_hide_the_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not onednn.nvidia_gpu_visible()
