"""Conv2D, MaxPooling2D and Dropout: Keras' layers, faster on PyTorch, the same results."""

import keras
import numpy as np
import pytest
from test_layers import input_and_weight_gradients

from brainprop.nets import kernels, layers

TORCH = keras.backend.backend() == "torch"


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype("float32")


def built_pair(ours_class, keras_class, shape, **options):
    """Our layer and Keras', built on `shape`, with the same random weights."""
    ours, theirs = ours_class(**options), keras_class(**options)
    for layer in (ours, theirs):
        layer.build(shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(0.0, 0.3, w.shape).astype("float32") for w in theirs.weights]
    for layer in (ours, theirs):
        layer.set_weights(weights)
    return ours, theirs


def assert_same_outputs_and_gradients(ours, theirs, x):
    expected = keras.ops.convert_to_numpy(theirs(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), expected,
                               rtol=1e-5, atol=1e-5)
    upstream = images(expected.shape, seed=2)
    for got, want in zip(input_and_weight_gradients(ours, x, upstream),
                         input_and_weight_gradients(theirs, x, upstream), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (3, 1), (1, 2)])
@pytest.mark.parametrize("shape", [(3, 8, 8, 3), (2, 9, 7, 4)])
def test_conv2d_equals_keras_layer(shape, strides, dilation, padding):
    ours, theirs = built_pair(layers.Conv2D, keras.layers.Conv2D, shape, filters=5,
                              kernel_size=3, strides=strides, dilation_rate=dilation,
                              padding=padding)

    assert_same_outputs_and_gradients(ours, theirs, images(shape))


@pytest.mark.parametrize("pool,strides", [(2, None), (3, 2), (2, 1)])
@pytest.mark.parametrize("shape", [(3, 8, 8, 3), (2, 9, 7, 4)])
def test_max_pooling_equals_keras_layer(shape, pool, strides):
    ours, theirs = built_pair(layers.MaxPooling2D, keras.layers.MaxPooling2D, shape,
                              pool_size=pool, strides=strides)

    assert_same_outputs_and_gradients(ours, theirs, images(shape))


def test_pytorch_runs_its_kernels_on_the_images_in_place(monkeypatch):
    calls = []
    for name in ("torch_conv2d", "torch_max_pool2d"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, _f=original, _n=name: (
            calls.append(_n), _f(*args))[1])
    x = images((2, 8, 8, 3))

    layers.MaxPooling2D()(layers.Conv2D(4, 3, padding="same")(x))

    assert calls == (["torch_conv2d", "torch_max_pool2d"] if TORCH else [])


def test_layers_round_trip_through_their_config():
    for layer in (layers.Conv2D(4, 3, strides=2, padding="same", name="c"),
                  layers.MaxPooling2D(3, name="p"), layers.Dropout(0.3, seed=5, name="d")):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(again) is type(layer)
        assert again.get_config() == layer.get_config()


def keep_and_scale(layer, x):
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    kept = y != 0
    return kept, y


def test_dropout_keeps_units_at_the_keep_rate_scaled_by_its_inverse():
    x = np.ones((64, 32, 32, 16), "float32")  # a million units
    layer = layers.Dropout(0.3, seed=7)

    kept, y = keep_and_scale(layer, x)

    assert abs(kept.mean() - 0.7) < 0.003  # 6 standard deviations
    np.testing.assert_allclose(y[kept], np.float32(1.0) / np.float32(0.7), rtol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_dropout_masks_follow_the_seed_generator():
    x = np.ones((8, 16, 16, 4), "float32")
    first, second = layers.Dropout(0.5, seed=3), layers.Dropout(0.5, seed=3)

    state = keras.ops.convert_to_numpy(first.seed_generator.state)
    mask = keep_and_scale(first, x)[0]
    next_mask = keep_and_scale(first, x)[0]

    assert not np.array_equal(mask, next_mask)  # the stream advances
    np.testing.assert_array_equal(keep_and_scale(second, x)[0], mask)  # the same seed
    second.seed_generator.state.assign(state)  # a backup's state, restored
    np.testing.assert_array_equal(keep_and_scale(second, x)[0], mask)
    assert not np.array_equal(keep_and_scale(layers.Dropout(0.5, seed=4), x)[0], mask)


def test_dropout_gradient_is_the_mask_scaled():
    x = images((4, 6, 6, 3))
    layer = layers.Dropout(0.4, seed=11)
    upstream = images(x.shape, seed=1)
    state = keras.ops.convert_to_numpy(layer.seed_generator.state)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    layer.seed_generator.state.assign(state)

    if keras.backend.backend() == "jax":
        import jax

        def loss(x):
            outputs, _ = layer.stateless_call([], [layer.seed_generator.state.value], x,
                                              training=True)
            return (outputs * upstream).sum()

        gradient = np.asarray(jax.grad(loss)(x))
    elif TORCH:
        import torch

        tx = torch.tensor(x, requires_grad=True)
        (layer(tx, training=True) * torch.as_tensor(upstream)).sum().backward()
        gradient = tx.grad.numpy()
    else:
        import tensorflow as tf

        tx = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tx)
            loss = tf.reduce_sum(layer(tx, training=True) * upstream)
        gradient = tape.gradient(loss, tx).numpy()

    kept = y != 0
    np.testing.assert_allclose(gradient, np.where(kept, upstream / np.float32(0.6), 0),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(TORCH, reason="PyTorch draws its own masks (see the test below)")
def test_dropout_is_keras_layer_elsewhere():
    x = np.ones((8, 16, 16, 4), "float32")

    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layers.Dropout(0.3, seed=9)(x, training=True)),
        keras.ops.convert_to_numpy(keras.layers.Dropout(0.3, seed=9)(x, training=True)))


@pytest.mark.skipif(not TORCH, reason="Keras' own masks on the other backends")
def test_dropout_on_pytorch_advances_the_seed_generator_as_keras_does():
    x = np.ones((8, 16, 16, 4), "float32")
    ours, theirs = layers.Dropout(0.3, seed=9), keras.layers.Dropout(0.3, seed=9)

    for _ in range(2):
        ours(x, training=True), theirs(x, training=True)

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours.seed_generator.state),
                                  keras.ops.convert_to_numpy(theirs.seed_generator.state))
