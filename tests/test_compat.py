"""What brainprop.utils.compat assumes of Keras and TensorFlow, each checked: one of
these failing after an upgrade names the use to look at again."""

import keras
import numpy as np
import pytest

from brainprop.utils import compat


def test_keras_is_the_release_every_use_was_checked_against():
    release = ".".join(keras.__version__.split(".")[:2])
    assert release == compat.KERAS_CHECKED, (
        f"Keras {keras.__version__}: check each use in brainprop/utils/compat.py again "
        f"(checked against {compat.KERAS_CHECKED}), the MirroredStrategy workaround on "
        "several GPUs included, then update KERAS_CHECKED and requirements.txt")


def test_keras_seeds_tensorflow_through_the_lazy_module_seeding_replaces():
    from keras.src.utils import rng_utils

    lazy = rng_utils.tf
    assert hasattr(lazy, "available")
    draws = []
    for _ in range(2):
        compat.seed_without_tensorflow(7)
        draws.append((float(keras.random.uniform(())), float(np.random.rand())))
    assert draws[0] == draws[1]
    assert rng_utils.tf is lazy  # put back


def test_keras_batch_norm_moves_its_variance_by_the_biased_batch_variance():
    layer = keras.layers.BatchNormalization(momentum=0.0)
    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 3, 3, 5)).astype("float32")
    layer(x, training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance),
                               x.var(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean),
                               x.mean(axis=(0, 1, 2)), rtol=1e-5)
    assert (layer.renorm, layer.synchronized, layer.axis % 4) == (False, False, 3)


def test_keras_tensorboard_writes_epoch_scalars_at_the_step_it_is_given(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    import tensorflow as tf

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    board = keras.callbacks.TensorBoard(str(tmp_path), write_graph=False)
    board.set_model(model)
    board.on_train_begin()
    board.on_train_batch_end(0, None)  # no logs: nothing per batch
    board.on_epoch_end(6, {"loss": 0.5, "val_loss": 0.25})
    board.on_train_end()

    def steps(split):
        events = event_accumulator.EventAccumulator(str(tmp_path / split),
                                                    size_guidance={"tensors": 0})
        events.Reload()
        return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                      for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}

    assert steps("train") == {"epoch_loss": [(6, 0.5)],
                              "epoch_learning_rate": [(6, pytest.approx(0.1))]}
    assert steps("validation") == {"epoch_loss": [(6, 0.25)]}


def test_producer_names_the_call_that_made_a_tensor_nested_models_and_shared_layers_included():
    shared = keras.layers.Dense(4)
    features = keras.Input((4,))
    head = keras.Model(features, keras.layers.Softmax()(features))
    inputs = keras.Input((4,))
    first = shared(inputs)
    second = shared(keras.layers.ReLU()(first))  # the second call of the same layer
    output = head(second)
    layer, call_inputs = compat.producer(second)
    assert layer is shared and call_inputs[0] is not inputs
    layer, call_inputs = compat.producer(first)
    assert layer is shared and call_inputs[0] is inputs
    layer, call_inputs = compat.producer(output)
    assert layer is head and call_inputs[0] is second


ON_TORCH = keras.backend.backend() == "torch"
TORCH_ONLY = "a PyTorch backend workaround"


def _counting_batches(n_batches: int):
    class Counting(keras.utils.PyDataset):
        ends = 0

        def __len__(self):
            return n_batches

        def __getitem__(self, index):
            return np.full((2, 3), index, "float32"), np.zeros((2, 1), "float32")

        def on_epoch_end(self):
            Counting.ends += 1

    return Counting()


def _dense_model(steps_per_execution: int) -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=steps_per_execution)
    return model


@pytest.mark.skipif(not ON_TORCH, reason=TORCH_ONLY)
def test_keras_still_refuses_several_steps_per_call_on_torch():
    with pytest.raises(ValueError, match="steps_per_execution` must be 1 with the PyTorch"):
        _dense_model(2).fit(np.zeros((4, 3)), np.zeros((4, 1)), batch_size=2, verbose=0)


@pytest.mark.skipif(not ON_TORCH, reason=TORCH_ONLY)
def test_keras_torch_loop_ends_a_pass_with_a_short_last_call_twice():
    batches = _counting_batches(3)  # 2 steps per call: the second call holds one batch
    model = _dense_model(2)
    compat.run_steps_per_execution_on_torch(model)
    model.fit(batches, epochs=2, verbose=0, shuffle=False)
    # One end before the first epoch (after the batch read to build the model), then two
    # per epoch; OnePassAtATime counts one.  A third fewer ends: drop the workaround.
    assert type(batches).ends == 1 + 2 * 2


@pytest.mark.skipif(not ON_TORCH, reason=TORCH_ONLY)
def test_several_steps_per_call_on_torch_are_the_steps_of_one_per_call_and_predict_joins():
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    weights, predictions = [], []
    for steps in (1, 4):
        keras.utils.set_random_seed(1)
        model = _dense_model(steps)
        compat.run_steps_per_execution_on_torch(model)
        model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
        weights.append([keras.ops.convert_to_numpy(w) for w in model.weights])
        predictions.append(model.predict(x, batch_size=2, verbose=0))
    for many, one in zip(weights[1], weights[0]):
        np.testing.assert_array_equal(many, one)
    np.testing.assert_array_equal(predictions[1], predictions[0])
    assert predictions[1].shape == (10, 1)


@pytest.mark.skipif(not ON_TORCH, reason=TORCH_ONLY)
def test_keras_unseeded_dropout_on_torch_draws_from_torchs_global_generator():
    # Why the networks' Dropout layers are given a seed (brainprop.nets.architectures).
    import torch

    layer = keras.layers.Dropout(0.5)
    x = keras.ops.ones((64, 64))
    torch.manual_seed(3)
    first = keras.ops.convert_to_numpy(layer(x, training=True))
    torch.manual_seed(3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=True)), first)
