"""The BrainProp rule (Section 2 of the paper): gradient identities, selection, and the model class."""

import importlib.util

import keras
import numpy as np
import pytest
from keras import ops
from test_convert import converted_classifier

from brainprop.model import BrainProp, brainprop_loss, reward_for, select_action
from brainprop.nets.layers import LocallyConnected2D

N_CLASSES = 5
BATCH = 8


def small_network(seed=3):
    """ReLU, BatchNorm and a locally connected layer, as the identities demand."""
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(0.0, 0.3)
    inputs = keras.Input((6, 6, 2))
    x = LocallyConnected2D(3, 3, kernel_initializer=init)(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, kernel_initializer=init)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(N_CLASSES, use_bias=False, kernel_initializer=init)(x)
    return BrainProp(inputs, outputs, seed=seed)


def residual_network(seed=3):
    """A skip connection around two convolutions, which none of the paper's networks has."""
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(0.0, 0.3)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)(
        inputs
    )
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=init)(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(N_CLASSES, kernel_initializer=init)(x)
    return BrainProp(inputs, outputs, seed=seed)


# The paper's layers in small, and networks that none of the paper's builders makes.
NETWORKS = {
    "locally_connected": small_network,
    "skip_connection": residual_network,
    "converted_classifier": converted_classifier,
}


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 6, 6, 2)).astype("float32")
    labels = rng.integers(0, N_CLASSES, BATCH).astype("int32")
    return x, labels


def assert_gradients_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        scale = max(np.abs(e).max(), 1e-6)
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * scale)


def brainprop_objective(labels, selected):
    def loss(q_values):
        reward = reward_for(ops.convert_to_tensor(selected), labels)
        return brainprop_loss(q_values, reward, ops.convert_to_tensor(selected))

    return loss


@pytest.mark.parametrize("network", NETWORKS)
def test_brainprop_gradient_equals_backprop_of_selected_output_error_only(network, batch, grad):
    x, labels = batch
    model = NETWORKS[network]()
    selected = np.random.default_rng(1).integers(0, N_CLASSES, BATCH).astype("int32")
    brainprop = grad(model, x, brainprop_objective(labels, selected))

    # Error backprop of 1/2 sum_n (t_n - Q_n)^2 with every output error but
    # the selected one set to zero: push delta = -(t - Q) * onehot(s) / batch
    # back through the network (a vector-Jacobian product).
    targets = np.eye(N_CLASSES, dtype="float32")[labels]
    mask = np.eye(N_CLASSES, dtype="float32")[selected]
    q = ops.convert_to_numpy(model(x, training=True))
    delta = -(targets - q) * mask / BATCH
    backprop = grad(model, x, lambda out: ops.sum(ops.multiply(out, delta)))

    assert_gradients_equal(brainprop, backprop)
    assert any(np.abs(g).max() > 1e-4 for g in brainprop)


@pytest.mark.parametrize("network", NETWORKS)
def test_brainprop_gradients_summed_over_all_choices_equal_full_mse_gradient(network, batch, grad):
    x, labels = batch
    model = NETWORKS[network]()
    total = None
    for s in range(N_CLASSES):
        selected = np.full(BATCH, s, dtype="int32")
        g = grad(model, x, brainprop_objective(labels, selected))
        total = g if total is None else [t + gi for t, gi in zip(total, g, strict=True)]

    targets = ops.convert_to_tensor(np.eye(N_CLASSES, dtype="float32")[labels])

    def full_mse(q_values):
        return 0.5 * ops.mean(ops.sum(ops.square(ops.subtract(targets, q_values)), axis=-1))

    assert_gradients_equal(total, grad(model, x, full_mse))


def test_loss_is_half_squared_reward_prediction_error_of_selected_unit():
    q = np.array([[0.2, 0.9, -0.1], [0.5, 0.1, 0.3]], dtype="float32")
    selected = np.array([1, 2], dtype="int32")
    labels = np.array([1, 0], dtype="int32")
    reward = reward_for(ops.convert_to_tensor(selected), labels)
    np.testing.assert_array_equal(ops.convert_to_numpy(reward), [1.0, 0.0])
    loss = brainprop_loss(ops.convert_to_tensor(q), reward, ops.convert_to_tensor(selected))
    expected = 0.5 * np.mean([(1 - 0.9) ** 2, (0 - 0.3) ** 2])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


def selection_frequencies(q, epsilon, draws=400_000, seed=7):
    q_batch = ops.convert_to_tensor(np.tile(np.asarray(q, "float32"), (draws, 1)))
    chosen = ops.convert_to_numpy(select_action(q_batch, epsilon, keras.random.SeedGenerator(seed)))
    return np.bincount(chosen, minlength=len(q)) / draws


def test_selection_is_greedy_with_probability_098_else_boltzmann_over_q():
    q = np.array([2.0, 1.0, 0.0, -1.0, 0.5], dtype="float32")
    softmax = np.exp(q) / np.exp(q).sum()
    expected = 0.02 * softmax
    expected[np.argmax(q)] += 0.98
    observed = selection_frequencies(q, 0.02)
    # Binomial standard errors at 400k draws are below 2e-4.
    np.testing.assert_allclose(observed, expected, atol=1.5e-3)
    assert observed[np.argmax(q)] < 0.9995  # exploration happens at all


def test_exploration_samples_from_softmax_of_q():
    q = np.array([1.5, 0.0, -0.5, 0.7], dtype="float32")
    softmax = np.exp(q) / np.exp(q).sum()
    np.testing.assert_allclose(selection_frequencies(q, 1.0, draws=200_000), softmax, atol=5e-3)


def test_selection_changes_between_calls_with_one_seed_generator():
    q = ops.convert_to_tensor(np.zeros((1000, 10), "float32"))
    generator = keras.random.SeedGenerator(1)
    first = ops.convert_to_numpy(select_action(q, 1.0, generator))
    second = ops.convert_to_numpy(select_action(q, 1.0, generator))
    assert (first != second).mean() > 0.5


def test_selection_draws_a_class_from_q_values_that_are_not_finite():
    # A diverged network: NaN and inf Q values still give valid classes (PyTorch's sampler
    # raised on them, so that a diverging run crashed instead of stopping on its NaN loss).
    q = np.zeros((200, N_CLASSES), "float32")
    q[:100] = np.nan
    q[100:, 0] = np.inf
    chosen = ops.convert_to_numpy(select_action(ops.convert_to_tensor(q), 1.0,
                                                keras.random.SeedGenerator(3)))
    assert chosen.dtype == np.int32 and ((0 <= chosen) & (chosen < N_CLASSES)).all()


def test_finite_q_values_draw_as_the_plain_max_boltzmann_formula_does():
    rng = np.random.default_rng(0)
    q = ops.convert_to_tensor(rng.standard_normal((500, N_CLASSES)).astype("float32"))
    chosen = ops.convert_to_numpy(select_action(q, 0.5, keras.random.SeedGenerator(7)))
    generator = keras.random.SeedGenerator(7)
    uniform = keras.random.uniform((500,), seed=generator)
    boltzmann = keras.random.categorical(q, 1, seed=generator, dtype="int32")[:, 0]
    plain = ops.where(uniform < 0.5, boltzmann, ops.cast(ops.argmax(q, axis=-1), "int32"))
    np.testing.assert_array_equal(chosen, ops.convert_to_numpy(plain))


def constant_q_model(epsilon):
    """Q does not depend on the input, and learning rate 0 keeps it fixed."""
    inputs = keras.Input((4,))
    zeros = keras.layers.Dense(N_CLASSES, use_bias=False, kernel_initializer="zeros")(inputs)
    model = BrainProp(inputs, zeros, epsilon=epsilon, seed=5)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model


class BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batch_accuracy, self.epoch_accuracy = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_accuracy.append(float(logs["accuracy"]))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_accuracy.append(float(logs["accuracy"]))


def test_random_choices_differ_between_steps_and_epochs_inside_fit():
    # Identical batches and a fixed Q: if the selection seed were frozen (the
    # trap of stateless training), every step would make the same choices and
    # the running reward rate would never move.
    model = constant_q_model(epsilon=1.0)
    x = np.ones((64 * 6, 4), "float32")
    y = np.zeros(64 * 6, "int32")
    logs = BatchLogs()
    model.fit(x, y, batch_size=64, epochs=4, shuffle=False, verbose=0, callbacks=[logs])
    assert len(set(np.round(logs.batch_accuracy[:6], 6))) > 1
    assert len(set(np.round(logs.epoch_accuracy, 6))) > 1
    # Uniform Q: the Boltzmann choice is class 0 one time in N_CLASSES.
    assert abs(np.mean(logs.epoch_accuracy) - 1 / N_CLASSES) < 0.06


def test_evaluation_accuracy_is_greedy_classification_accuracy():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(N_CLASSES, use_bias=False)(inputs)
    model = BrainProp(inputs, outputs, seed=1)
    model.compile(optimizer="sgd")
    x = np.random.default_rng(0).normal(size=(300, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, N_CLASSES, 300).astype("int32")
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    accuracy = model.evaluate(x, y, batch_size=50, verbose=0, return_dict=True)["accuracy"]
    np.testing.assert_allclose(accuracy, np.mean(predicted == y), atol=1e-6)


def test_train_step_applies_sgd_on_the_selected_unit_gradient(grad):
    # With epsilon 0 the choice is argmax Q, so one fit step must move the
    # weights by exactly -lr times the BrainProp gradient of that choice.
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(7, use_bias=False, activation="relu")(inputs)
    outputs = keras.layers.Dense(N_CLASSES, use_bias=False)(hidden)
    model = BrainProp(inputs, outputs, epsilon=0.0, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, N_CLASSES, 16).astype("int32")
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    selected = np.argmax(ops.convert_to_numpy(model(x)), axis=-1).astype("int32")
    expected_grad = grad(model, x, brainprop_objective(y, selected))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    for b, a, g in zip(before, after, expected_grad, strict=True):
        np.testing.assert_allclose(a, b - 0.5 * g, rtol=1e-5, atol=1e-6)


def test_partial_last_batch_steps_by_the_release_formula(grad):
    # The release's loss of a batch of b examples, with B the configured batch
    # size: sum_i 1/2 (r_i - Q_s,i)^2 / B + the L2 penalties.  So the last batch
    # of 5 (of an epoch of 16 + 5) steps 5/16 as far as a mean would.
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(7, use_bias=False, activation="relu")(inputs)
    outputs = keras.layers.Dense(
        N_CLASSES, use_bias=False, kernel_regularizer=keras.regularizers.L2(0.01)
    )(hidden)
    model = BrainProp(inputs, outputs, epsilon=0.0, seed=1, batch_size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(21, 6)).astype("float32")
    y = rng.integers(0, N_CLASSES, 21).astype("int32")

    def release_loss(x_batch, y_batch):
        selected = np.argmax(ops.convert_to_numpy(model(x_batch)), axis=-1)
        reward = ops.convert_to_tensor((selected == y_batch).astype("float32"))
        mask = ops.convert_to_tensor(np.eye(N_CLASSES, dtype="float32")[selected])

        def loss(q_values):
            rpe = ops.subtract(reward, ops.sum(ops.multiply(q_values, mask), axis=-1))
            return ops.sum(0.5 * ops.square(rpe)) / 16

        hidden_kernel, output_kernel = grad(model, x_batch, loss)
        l2 = 2 * 0.01 * ops.convert_to_numpy(model.layers[-1].kernel)  # not divided
        return [hidden_kernel, output_kernel + l2]

    weights = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    for rows in (slice(0, 16), slice(16, 21)):
        gradient = release_loss(x[rows], y[rows])
        weights = [w - 0.5 * g for w, g in zip(weights, gradient, strict=True)]
        model.fit(x[rows], y[rows], batch_size=16, epochs=1, verbose=0, shuffle=False)
        for expected, variable in zip(weights, model.trainable_variables, strict=True):
            np.testing.assert_allclose(
                ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6
            )
        weights = [ops.convert_to_numpy(v) for v in model.trainable_variables]


def test_evaluation_loss_is_the_mean_whatever_the_batches():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(N_CLASSES, use_bias=False)(inputs)
    model = BrainProp(inputs, outputs, seed=1, batch_size=16)
    model.compile(optimizer="sgd")
    x = np.random.default_rng(0).normal(size=(21, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, N_CLASSES, 21).astype("int32")
    q = ops.convert_to_numpy(model(x))
    greedy = np.argmax(q, axis=-1)
    expected = np.mean(0.5 * ((greedy == y) - q[np.arange(21), greedy]) ** 2)
    for batch_size in (16, 21, 4):
        loss = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)["loss"]
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


# --- compile and fit as for any Keras model --------------------------------------------


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


def weights_after_one_epoch(data_of):
    keras.utils.set_random_seed(6)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(7, activation="relu")(inputs)
    model = BrainProp(inputs, keras.layers.Dense(N_CLASSES)(hidden), seed=2, batch_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.3))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 6)).astype("float32")
    y = rng.integers(0, N_CLASSES, 20).astype("int32")
    data, fit_options = data_of(x, y)
    model.fit(data, epochs=1, verbose=0, shuffle=False, **fit_options)
    return [ops.convert_to_numpy(w) for w in model.trainable_weights]


def torch_tensor(array):
    import torch

    return torch.from_numpy(array)


def test_numpy_arrays_a_pydataset_tf_data_and_a_torch_loader_train_alike():
    # The same batches in the same order, exploration included, whatever feeds them.
    expected = weights_after_one_epoch(lambda x, y: (x, {"y": y, "batch_size": 8}))
    feeds = {"PyDataset": lambda x, y: (Batches(x, y, 8), {})}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        feeds["tf.data"] = lambda x, y: (tf.data.Dataset.from_tensor_slices((x, y)).batch(8), {})
    if importlib.util.find_spec("torch") is not None:  # Keras takes its loaders on any backend
        from torch.utils.data import DataLoader, TensorDataset

        feeds["torch DataLoader"] = lambda x, y: (
            DataLoader(TensorDataset(*map(torch_tensor, (x, y))), batch_size=8), {})
    for feed in feeds.values():
        for got, want in zip(weights_after_one_epoch(feed), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.abs(expected[-1]).max() > 0


@pytest.mark.parametrize("network", NETWORKS)
def test_a_saved_model_loads_back_with_the_rules_settings(network, batch, tmp_path):
    x, labels = batch
    model = NETWORKS[network]()
    model.epsilon, model.batch_size = 0.1, 16
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, BrainProp)
    assert (loaded.epsilon, loaded.batch_size, loaded.seed) == (0.1, 16, 3)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    loaded.compile(optimizer="sgd")
    assert np.isfinite(loaded.fit(x, labels, epochs=1, verbose=0).history["loss"][0])
