"""LocallyConnected2D: unshared 2D convolution with Keras 2's weight layout."""

import keras
import numpy as np
import pytest

from brainprop.nets.layers import LocallyConnected2D, window_patches


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def reference_output(x, kernel, bias, kernel_size, strides):
    """Keras 2 semantics, one output position at a time, in float64."""
    (kh, kw), (sh, sw) = kernel_size, strides
    batch, rows, cols, _ = x.shape
    out_rows, out_cols = (rows - kh) // sh + 1, (cols - kw) // sw + 1
    out = np.zeros((batch, out_rows, out_cols, kernel.shape[-1]))
    for i in range(out_rows):
        for j in range(out_cols):
            window = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            out[:, i, j] = window.reshape(batch, -1) @ kernel[i * out_cols + j]
    if bias is not None:
        out += bias
    return out


def random_layer(input_shape, filters, kernel_size, strides, use_bias, seed=0):
    """A built layer with random weights (bias included, so it is not all zeros)."""
    # Zeros, then NumPy draws: an initializer's random draw compiles per shape on JAX.
    layer = LocallyConnected2D(
        filters, kernel_size, strides=strides, use_bias=use_bias, kernel_initializer="zeros"
    )
    layer.build((None, *input_shape))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    return layer


CASES = [
    # input (rows, cols, channels), filters, kernel_size, strides, use_bias
    ((5, 5, 2), 3, 3, 1, False),
    ((7, 9, 3), 4, 3, 2, False),
    ((6, 8, 1), 2, (2, 3), 1, True),
    ((9, 6, 4), 5, (2, 3), (2, 1), True),
    ((8, 7, 2), 3, 3, (1, 2), True),
]


@pytest.mark.parametrize("input_shape, filters, kernel_size, strides, use_bias", CASES)
def test_output_equals_per_position_reference_and_compute_output_shape(
    input_shape, filters, kernel_size, strides, use_bias
):
    layer = random_layer(input_shape, filters, kernel_size, strides, use_bias)
    x = np.random.default_rng(1).normal(size=(3, *input_shape)).astype("float32")
    kernel, *bias = layer.get_weights()

    actual = keras.ops.convert_to_numpy(layer(x))

    expected = reference_output(
        x, kernel, bias[0] if use_bias else None, pair(kernel_size), pair(strides)
    )
    assert actual.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_kernel_rows_are_output_positions_row_major_and_windows_row_col_channel():
    # Output (1, 2) of a 3x4 output grid is position 1 * 4 + 2 = 6; within its
    # 2x3 window over 3 channels, element (row 1, col 2, channel 1) is
    # (1 * 3 + 2) * 3 + 1 = 16.
    layer = LocallyConnected2D(1, (2, 3), kernel_initializer="zeros")
    x = np.arange(1 * 4 * 6 * 3, dtype="float32").reshape(1, 4, 6, 3)
    layer.build(x.shape)
    kernel = np.zeros(layer.kernel.shape, "float32")
    kernel[6, 16, 0] = 1.0
    layer.set_weights([kernel])

    out = keras.ops.convert_to_numpy(layer(x))

    assert out[0, 1, 2, 0] == x[0, 1 + 1, 2 + 2, 1]
    assert np.count_nonzero(out) == 1


@pytest.mark.parametrize(
    "input_shape, strides, kernel_shape, params",
    [
        ((32, 32, 3), 1, (900, 27, 32), 777_600),
        ((30, 30, 32), 2, (196, 288, 32), 1_806_336),
    ],
)
def test_cifar_loccon_kernel_shape_and_parameter_count(
    input_shape, strides, kernel_shape, params
):
    # Zeros: the shapes are the point, and a random draw this large is slow on JAX.
    layer = LocallyConnected2D(32, 3, strides=strides, kernel_initializer="zeros")
    layer.build((None, *input_shape))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel"]
    assert tuple(layer.kernel.shape) == kernel_shape
    assert layer.count_params() == params


def test_bias_has_keras2_shape_one_per_output_position_and_filter():
    layer = LocallyConnected2D(4, 3, strides=2, use_bias=True, kernel_initializer="zeros")
    layer.build((None, 9, 7, 2))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel", "bias"]
    assert tuple(layer.bias.shape) == (4, 3, 4)


def test_config_round_trip_gives_an_equal_layer_with_the_same_output():
    layer = LocallyConnected2D(
        3,
        (2, 3),
        strides=(2, 1),
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05),
        kernel_regularizer=keras.regularizers.L2(0.01),
        name="loccon",
    )
    x = np.random.default_rng(2).normal(size=(2, 7, 6, 2)).astype("float32")
    expected = keras.ops.convert_to_numpy(layer(x))

    config = layer.get_config()
    clone = LocallyConnected2D.from_config(config)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())

    assert clone.get_config() == config
    assert clone.kernel_size == (2, 3) and clone.strides == (2, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), expected)


def test_serialization_finds_the_registered_class():
    layer = LocallyConnected2D(2, 3, strides=2)
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is LocallyConnected2D
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize(
    "input_shape, kernel_size, strides", [((8, 8, 3), 3, 1), ((9, 7, 2), (2, 3), (2, 1))]
)
def test_matches_keras2_implementation_1(input_shape, kernel_size, strides, use_bias):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf_keras runs on TensorFlow only")
    tf_keras = pytest.importorskip("tf_keras")
    keras2 = tf_keras.layers.LocallyConnected2D(
        4,
        kernel_size,
        strides=strides,
        implementation=1,
        use_bias=use_bias,
        bias_initializer="random_normal",
    )
    x = np.random.default_rng(3).normal(size=(2, *input_shape)).astype("float32")
    expected = keras2(x).numpy()
    ours = LocallyConnected2D(4, kernel_size, strides=strides, use_bias=use_bias)
    ours.build(x.shape)

    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in keras2.weights]
    ours.set_weights(keras2.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5
    )


def test_one_sgd_step_changes_the_kernel():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 5, 2))
    outputs = LocallyConnected2D(3, 3, use_bias=True)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6, 5, 2)).astype("float32")
    y = rng.normal(size=(4, 4, 3, 3)).astype("float32")

    model.fit(x, y, batch_size=4, epochs=1, verbose=0)

    for old, new in zip(before, model.get_weights(), strict=True):
        assert not np.allclose(old, new)


@pytest.mark.parametrize("padding", ["same", "causal", "full"])
def test_padding_other_than_valid_raises(padding):
    with pytest.raises(ValueError, match="padding"):
        LocallyConnected2D(2, 3, padding=padding)


def test_channels_first_raises():
    with pytest.raises(ValueError, match="channels_last"):
        LocallyConnected2D(2, 3, data_format="channels_first")


@pytest.mark.parametrize("kernel_size", [0, (3,), (3, 3, 3), (2, -1)])
def test_invalid_kernel_size_raises(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        LocallyConnected2D(2, kernel_size)


def test_unknown_spatial_size_raises_when_building():
    with pytest.raises(ValueError, match="fully known"):
        LocallyConnected2D(2, 3).build((None, None, 8, 3))


def test_input_smaller_than_kernel_raises_when_building():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        LocallyConnected2D(2, 3).build((None, 2, 8, 3))


# Stride phases that need padding (9 rows, stride 2), cropping (11 rows, stride 3)
# and a kernel smaller than the stride (phases no window reads).
PATCH_CASES = [
    ((8, 8, 3), (3, 3), (1, 1)),
    ((9, 7, 2), (2, 3), (2, 1)),
    ((10, 9, 4), (3, 3), (2, 2)),
    ((11, 11, 1), (3, 3), (3, 3)),
    ((9, 8, 2), (2, 2), (3, 3)),
]


@pytest.mark.parametrize("input_shape, kernel_size, strides", PATCH_CASES)
def test_window_patches_equal_extract_patches_exactly(input_shape, kernel_size, strides):
    x = np.random.default_rng(6).normal(size=(2, *input_shape)).astype("float32")
    expected = keras.ops.convert_to_numpy(
        keras.ops.image.extract_patches(x, kernel_size, strides, padding="valid")
    )
    batch, out_rows, out_cols, window = expected.shape

    actual = window_patches(x, kernel_size, strides, (out_rows, out_cols))

    # Output position first: (positions, batch, window).
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(actual),
        expected.reshape(batch, out_rows * out_cols, window).transpose(1, 0, 2),
    )


def input_and_weight_gradients(layer, x, upstream):
    """d sum(layer(x) * upstream) / d (x, *layer weights), as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * upstream)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        return [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        def loss_fn(x, weights):
            outputs, _ = layer.stateless_call(weights, [], x)
            return (outputs * upstream).sum()

        gx, gw = jax.grad(loss_fn, argnums=(0, 1))(x, [w.value for w in layer.weights])
        return [np.asarray(g) for g in (gx, *gw)]
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        loss = (layer(x) * torch.as_tensor(upstream)).sum()
        grads = torch.autograd.grad(loss, [x, *(w.value for w in layer.trainable_variables)])
        return [g.numpy() for g in grads]
    pytest.skip(f"no gradient helper for backend {backend}")


def reference_gradients(x, kernel, upstream, kernel_size, strides, use_bias):
    """The same gradients one output position at a time, in float64."""
    (kh, kw), (sh, sw) = kernel_size, strides
    batch, out_rows, out_cols, _ = upstream.shape
    gx, gk = np.zeros(x.shape), np.zeros(kernel.shape)
    for i in range(out_rows):
        for j in range(out_cols):
            p, rows, cols = i * out_cols + j, slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            window = x[:, rows, cols, :].reshape(batch, -1).astype(np.float64)
            gk[p] = window.T @ upstream[:, i, j]
            gx[:, rows, cols, :] += (upstream[:, i, j] @ kernel[p].T).reshape(
                batch, kh, kw, -1
            )
    return [gx, gk] + ([upstream.sum(axis=0)] if use_bias else [])


GRADIENT_CASES = [
    (shape, 3, kernel_size, strides, use_bias)
    for (shape, kernel_size, strides), use_bias in zip(PATCH_CASES, [False, True] * 3, strict=False)
] + [((30, 30, 4), 5, 3, 2, False)]


@pytest.mark.parametrize("input_shape, filters, kernel_size, strides, use_bias", GRADIENT_CASES)
def test_input_and_weight_gradients_equal_per_position_reference(
    input_shape, filters, kernel_size, strides, use_bias
):
    layer = random_layer(input_shape, filters, kernel_size, strides, use_bias)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    upstream = rng.normal(size=(3, *layer.compute_output_shape(x.shape)[1:])).astype("float32")

    actual = input_and_weight_gradients(layer, x, upstream)

    expected = reference_gradients(
        x, layer.get_weights()[0], upstream, pair(kernel_size), pair(strides), use_bias
    )
    assert [a.shape for a in actual] == [e.shape for e in expected]
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)
