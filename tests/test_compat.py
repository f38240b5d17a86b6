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
    for many, one in zip(weights[1], weights[0], strict=True):
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


# --- what the layers' fast kernels assume (brainprop.nets.kernels) -------------------------


def test_batch_statistics_move_as_keras_batch_norm_moves_them():
    x = np.random.default_rng(1).normal(1.0, 2.0, (6, 3, 3, 4)).astype("float32")
    keras_layer, moved = (keras.layers.BatchNormalization(momentum=0.7) for _ in range(2))
    for layer in (keras_layer, moved):
        layer.build(x.shape)
        layer.moving_mean.assign(np.full(4, 0.5, "float32"))
        layer.moving_variance.assign(np.full(4, 3.0, "float32"))
    keras_layer(x, training=True)
    compat.move_batch_statistics(moved, x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)))
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(getattr(moved, name)),
                                   keras.ops.convert_to_numpy(getattr(keras_layer, name)),
                                   rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("size,stride", [(8, 1), (8, 2), (9, 2), (7, 3)])
def test_keras_same_padding_puts_the_odd_zero_after(size, stride):
    x = np.random.default_rng(2).normal(size=(1, size, size, 2)).astype("float32")
    same = keras.layers.Conv2D(3, 3, strides=stride, padding="same", use_bias=False)
    valid = keras.layers.Conv2D(3, 3, strides=stride, padding="valid", use_bias=False)
    same.build(x.shape)
    valid.build(x.shape)
    valid.set_weights(same.get_weights())
    before, after = compat.same_padding(size, 3, stride)
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(x)),
                               keras.ops.convert_to_numpy(valid(padded)), rtol=1e-5, atol=1e-6)


def test_keras_conv2d_convolves_through_its_convolution_op():
    # brainprop.nets.layers.Conv2D replaces this method to run PyTorch's kernel in place.
    calls = []

    class Recording(keras.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            calls.append(1)
            return super().convolution_op(inputs, kernel)

    Recording(2, 3)(np.zeros((1, 5, 5, 1), "float32"))
    assert calls == [1]


# --- the state of Keras' callbacks (brainprop.train.resume) --------------------------------


def test_early_stopping_counters_restored_after_its_reset_carry_on():
    stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=3,
                                             min_delta=0.001)
    stopping.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stopping.on_train_begin()
    for epoch, accuracy in enumerate([0.5, 0.6, 0.6]):
        stopping.on_epoch_end(epoch, {"val_accuracy": accuracy})
    state = compat.early_stopping_state(stopping)
    assert set(state) == set(compat.EARLY_STOPPING_STATE)
    assert (state["wait"], state["best_epoch"]) == (1, 1)
    assert state["best"] == pytest.approx(0.6)

    stopping.on_train_begin()  # a new session resets the counters
    assert compat.early_stopping_state(stopping) != state
    compat.restore_early_stopping(stopping, state)
    stopping.model.stop_training = False
    for epoch in (3, 4):
        stopping.on_epoch_end(epoch, {"val_accuracy": 0.6})
    assert stopping.model.stop_training and stopping.stopped_epoch == 4


def test_checkpoint_best_restored_decides_what_it_saves(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    path = tmp_path / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), monitor="val_accuracy", mode="max",
                                                 save_best_only=True, save_weights_only=True)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    compat.restore_checkpoint_best(checkpoint, 0.9)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.5})
    assert not path.exists() and compat.checkpoint_best(checkpoint) == 0.9
    checkpoint.on_epoch_end(1, {"val_accuracy": 0.95})
    assert path.exists() and compat.checkpoint_best(checkpoint) == pytest.approx(0.95)
