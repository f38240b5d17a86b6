"""BatchNormalization: Keras' layer, with the backend's fused kernel where it applies,
in float32 and under Keras' mixed_bfloat16 policy."""

import keras
import numpy as np
import pytest

from brainprop.nets.layers import BatchNormalization


def layer_pair(shape, axis=-1, seed=1, dtype=None):
    """Keras' layer and ours, built, with the same random weights and statistics (float32
    under any policy `dtype`)."""
    ours = BatchNormalization(axis=axis, dtype=dtype)
    keras_layer = keras.layers.BatchNormalization(axis=axis, dtype=dtype)
    rng = np.random.default_rng(seed)
    for layer in (ours, keras_layer):
        layer.build(shape)
    weights = [(0.5 + rng.random(w.shape)).astype("float32") for w in keras_layer.weights]
    for layer in (ours, keras_layer):
        layer.set_weights(weights)
    return ours, keras_layer


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(1.0, 2.0, shape).astype("float32")


def outputs_and_gradients(layer, x, training):
    """Output, and the gradients of sum(y sin y) for the input, gamma and beta (in
    float32 numbers; `x` in the layer's compute dtype)."""
    x = keras.ops.convert_to_tensor(x, layer.compute_dtype)
    if keras.backend.backend() == "jax":
        import jax

        def loss(x, gamma, beta):
            values = [gamma, beta, *(v.value for v in layer.non_trainable_variables)]
            y, _ = layer.stateless_call(values[:2], values[2:], x, training=training)
            return jax.numpy.sum(y * jax.numpy.sin(y)), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
            x, layer.gamma.value, layer.beta.value
        )
        layer(x, training=training)  # update the moving statistics, as a step would
        return [np.asarray(t, "float32") for t in (y, *grads)]
    if keras.backend.backend() == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        y = layer(x, training=training)
        grads = torch.autograd.grad(torch.sum(y * torch.sin(y)),
                                    [x, layer.gamma.value, layer.beta.value])
        return [t.detach().float().numpy() for t in (y, *grads)]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.sin(y))
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return [np.asarray(t, "float32") for t in (y, *grads)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (5, 3, 4, 2)])
def test_outputs_gradients_and_moving_statistics_equal_keras_layer(shape, training):
    ours, reference = layer_pair(shape)
    x = images(shape)

    got, expected = outputs_and_gradients(ours, x, training), outputs_and_gradients(
        reference, x, training
    )

    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.max(np.abs(b)))
    for a, b in zip(ours.non_trainable_variables, reference.non_trainable_variables, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6
        )


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (5, 3, 4, 2)])
def test_bfloat16_outputs_gradients_and_moving_statistics_equal_keras_layer(shape, training):
    # Under mixed_bfloat16 both normalise in float32 and round the outputs to bfloat16: they
    # may differ by the last bit of bfloat16 (8 significant bits: 2**-7 relative), the
    # gradients by what that bit makes of sum(y sin y).  The moving statistics move in
    # float32, from the same bfloat16 images.
    ours, reference = layer_pair(shape, dtype="mixed_bfloat16")
    x = images(shape)

    got, expected = outputs_and_gradients(ours, x, training), outputs_and_gradients(
        reference, x, training
    )

    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=2**-7, atol=2**-7 * np.max(np.abs(b)))
    for a, b in zip(ours.non_trainable_variables, reference.non_trainable_variables, strict=True):
        assert keras.backend.standardize_dtype(a.dtype) == "float32"
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6
        )


@pytest.mark.parametrize("training", [True, False])
def test_bfloat16_images_come_out_in_bfloat16_with_float32_weights(training):
    shape = (8, 3, 3, 4)
    layer, _ = layer_pair(shape, dtype="mixed_bfloat16")

    y = layer(keras.ops.convert_to_tensor(images(shape), "bfloat16"), training=training)

    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} == {"float32"}


def test_training_normalizes_by_the_batch_and_moves_statistics_by_the_biased_variance():
    shape = (8, 3, 3, 4)
    layer, _ = layer_pair(shape)
    gamma, beta, moving_mean, moving_variance = (
        keras.ops.convert_to_numpy(w).astype(np.float64) for w in layer.weights
    )
    x = images(shape)

    y = keras.ops.convert_to_numpy(layer(x, training=True))

    data = x.astype(np.float64)
    mean, variance = data.mean(axis=(0, 1, 2)), data.var(axis=(0, 1, 2))  # biased
    expected = (data - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    momentum = layer.momentum
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_mean),
        momentum * moving_mean + (1 - momentum) * mean, rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_variance),
        momentum * moving_variance + (1 - momentum) * variance, rtol=1e-6)


def test_channels_first_takes_keras_path_with_the_same_result():
    shape = (4, 3, 5, 5)
    ours, reference = layer_pair(shape, axis=1)
    x = images(shape)

    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x, training=True)),
        keras.ops.convert_to_numpy(reference(x, training=True)),
        rtol=1e-6, atol=1e-6,
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's kernel")
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
def test_tensorflow_runs_the_fused_kernel(training, dtype):
    import tensorflow as tf

    layer, _ = layer_pair((2, 3, 3, 4), dtype=dtype)
    graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(
        tf.TensorSpec((None, 3, 3, 4), layer.compute_dtype)
    ).graph

    kinds = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in kinds
    assert "Rsqrt" not in kinds  # Keras' composite normalization is not built


def test_config_round_trip_finds_the_registered_class():
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn")

    config = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(config)

    assert type(again) is BatchNormalization
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("training", [True, False])
def test_images_of_any_memory_order_give_keras_results(training):
    # Channels last in shape, but laid out otherwise in memory (PyTorch keeps a transpose's
    # order): a locally connected layer's outputs, say.
    ours, reference = layer_pair((6, 5, 4, 3))
    x = keras.ops.transpose(keras.ops.convert_to_tensor(images((4, 5, 6, 3))), (2, 1, 0, 3))

    for a, b in zip(outputs_and_gradients(ours, x, training),
                    outputs_and_gradients(reference, x, training), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.max(np.abs(b)))


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's kernel")
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
def test_pytorch_runs_its_batch_norm_kernel(training, dtype, monkeypatch):
    import torch

    calls = []
    kernel = torch.nn.functional.batch_norm
    monkeypatch.setattr(torch.nn.functional, "batch_norm",
                        lambda *args, **kwargs: (calls.append(1), kernel(*args, **kwargs))[1])
    layer, _ = layer_pair((2, 3, 3, 4), dtype=dtype)

    layer(keras.ops.convert_to_tensor(images((2, 3, 3, 4)), layer.compute_dtype),
          training=training)

    assert calls == [1]


def test_one_value_a_channel_takes_keras_path():
    # PyTorch's kernel refuses to train on a single value per channel; Keras' layer gives 0 variance.
    ours, reference = layer_pair((1, 1, 1, 3))
    x = images((1, 1, 1, 3))

    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x, training=True)),
                               keras.ops.convert_to_numpy(reference(x, training=True)),
                               rtol=1e-6, atol=1e-6)
