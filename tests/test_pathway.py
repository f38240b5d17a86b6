"""The feedback pathway: every kind of feedback on every kind of weight layer sends the
learning signal down through its feedback weights, computed here by hand in NumPy, while
each layer's own update keeps its local form (the signal at its output times its input)."""

import dataclasses

import keras
import numpy as np
import pytest
from conftest import gradients
from keras import ops

from brainprop.model.attention_gated import brainprop_loss
from brainprop.model.feedback import FEEDBACK, get_feedback
from brainprop.model.pathway import (
    DirectFeedback,
    FeedbackPath,
    LinearMap,
    StopSignal,
    has_feedback,
    layers_of,
    with_feedback,
    without_feedback,
)
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model, compile_model
from brainprop.nets.layers import LocallyConnected2D
from brainprop.utils.errors import BrainPropError
from brainprop.utils.gradients import pullback

LAYER_KINDS = {  # name: (input shape, make the layer)
    "dense": ((5,), lambda: keras.layers.Dense(3, use_bias=False)),
    "conv-same-1": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3, padding="same",
                                                            use_bias=False)),
    "conv-valid-1": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3, use_bias=False)),
    "conv-same-2": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3, strides=2, padding="same",
                                                            use_bias=False)),
    "conv-valid-2": ((6, 6, 2), lambda: keras.layers.Conv2D(3, 3, strides=2, use_bias=False)),
    "loccon-1": ((5, 5, 2), lambda: LocallyConnected2D(3, 3)),
    "loccon-2": ((6, 6, 2), lambda: LocallyConnected2D(3, 3, strides=2)),
}
LAYERED = ["random", "sign", "kolen-pollack"]


# --- the layers' linear maps, by hand -----------------------------------------------------


def conv_by_hand(x, kernel, strides, padding):
    """A channels-last 2D convolution of one image `x` (rows, cols, channels)."""
    kh, kw, _, filters = kernel.shape
    rows, cols, _ = x.shape
    if padding == "same":
        out_r, out_c = -(-rows // strides), -(-cols // strides)
        pad_r = max((out_r - 1) * strides + kh - rows, 0)
        pad_c = max((out_c - 1) * strides + kw - cols, 0)
        x = np.pad(x, ((pad_r // 2, pad_r - pad_r // 2), (pad_c // 2, pad_c - pad_c // 2),
                       (0, 0)))
    else:
        out_r, out_c = (rows - kh) // strides + 1, (cols - kw) // strides + 1
    out = np.zeros((out_r, out_c, filters))
    for r in range(out_r):
        for c in range(out_c):
            window = x[r * strides:r * strides + kh, c * strides:c * strides + kw]
            out[r, c] = np.tensordot(window, kernel, axes=3)
    return out


def loccon_by_hand(x, kernel, strides):
    """Keras 2's LocallyConnected2D (implementation 1) of one image: a kernel a position."""
    positions, window_size, filters = kernel.shape
    rows, cols, channels = x.shape
    k = int(round((window_size / channels) ** 0.5))
    out_r, out_c = (rows - k) // strides + 1, (cols - k) // strides + 1
    out = np.zeros((out_r, out_c, filters))
    for r in range(out_r):
        for c in range(out_c):
            window = x[r * strides:r * strides + k, c * strides:c * strides + k].reshape(-1)
            out[r, c] = window @ kernel[r * out_c + c]
    return out


def linear_by_hand(layer, x, kernel):
    if isinstance(layer, keras.layers.Dense):
        return x @ kernel
    if isinstance(layer, LocallyConnected2D):
        return loccon_by_hand(x, kernel, layer.strides[0])
    return conv_by_hand(x, kernel, layer.strides[0], layer.padding)


def signal_down_by_hand(layer, x, kernel, upstream):
    """The transpose of x -> f(x, kernel) applied to `upstream`: its matrix, column by
    column, from the images of the unit vectors."""
    flat = np.zeros(x.size)
    columns = []
    for i in range(x.size):
        flat[:] = 0
        flat[i] = 1
        columns.append(linear_by_hand(layer, flat.reshape(x.shape), kernel).reshape(-1))
    return (np.stack(columns, axis=1).T @ upstream.reshape(-1)).reshape(x.shape)


def kernel_gradient_by_hand(layer, x, kernel, upstream):
    """The signal at the layer's output times its input: d sum(f(x, K) * upstream) / dK."""
    gradient = np.zeros(kernel.size)
    unit = np.zeros(kernel.size)
    for i in range(kernel.size):
        unit[:] = 0
        unit[i] = 1
        gradient[i] = np.sum(linear_by_hand(layer, x, unit.reshape(kernel.shape)) * upstream)
    return gradient.reshape(kernel.shape)


# --- small networks -----------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tests")
class Shift(keras.layers.Layer):
    """x + v, v a trainable variable of one image's shape: v's gradient, for a batch of
    one, is the signal arriving at x."""

    def build(self, input_shape):
        self.v = self.add_weight(shape=input_shape[1:], initializer="zeros")

    def call(self, inputs):
        return inputs + self.v


def one_layer(name, feedback, seed=5):
    keras.utils.set_random_seed(seed)
    shape, make = LAYER_KINDS[name]
    inputs = keras.Input(shape)
    layer = make()
    network = with_feedback(keras.Model(inputs, layer(inputs)), feedback, seed=seed)
    outer = keras.Input(shape)
    return keras.Model(outer, network(Shift()(outer))), layer


def feedback_of(model, layer, kind):
    """B this step, as NumPy."""
    path = next(other for other in layers_of(model) if isinstance(other, FeedbackPath))
    stored = ops.convert_to_numpy(path.feedback)
    kernel = ops.convert_to_numpy(layer.kernel)
    return np.sign(kernel) * stored if kind == "sign" else stored


@pytest.mark.parametrize("name", list(LAYER_KINDS))
@pytest.mark.parametrize("kind", LAYERED)
def test_the_signal_passed_down_goes_through_B_and_the_update_stays_local(kind, name):
    model, layer = one_layer(name, kind)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *model.input_shape[1:])).astype("float32")
    upstream = rng.standard_normal(model.output_shape[1:]).astype("float32")
    grads = gradients(model, x, lambda y: ops.sum(y * ops.convert_to_tensor(upstream)))
    kernel = ops.convert_to_numpy(layer.kernel)
    feedback = feedback_of(model, layer, kind)
    assert not np.allclose(feedback, kernel, atol=1e-3)  # B is not W: the test can fail
    np.testing.assert_allclose(grads[0], signal_down_by_hand(layer, x[0], feedback, upstream),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], kernel_gradient_by_hand(layer, x[0], kernel, upstream),
                               rtol=1e-4, atol=1e-6)
    if kind == "kolen-pollack":  # B's gradient is W's
        np.testing.assert_array_equal(grads[2], grads[1])
    # The forward pass is the layer's own.
    plain = ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), plain)


@pytest.mark.parametrize("name", ["dense", "loccon-1", "loccon-2"])
@pytest.mark.parametrize("learned", [False, True])
def test_a_maps_own_transpose_is_its_vector_jacobian_product_for_a_batch(name, learned):
    # PyTorch takes the transpose of these maps from their own code, not from autograd.
    shape, make = LAYER_KINDS[name]
    layer = make()
    layer.build((None, *shape))
    linear = LinearMap(layer)
    rng = np.random.default_rng(7)
    x = ops.convert_to_tensor(rng.standard_normal((4, *shape)).astype("float32"))
    kernel = ops.convert_to_tensor(
        rng.standard_normal(tuple(layer.kernel.shape)).astype("float32"))
    upstream = ops.convert_to_tensor(
        rng.standard_normal(tuple(layer.compute_output_shape((4, *shape)))).astype("float32"))
    to_inputs, to_kernel = linear.transpose(x, kernel, upstream, learned)
    expected = pullback(linear, [x, kernel], upstream)
    np.testing.assert_allclose(ops.convert_to_numpy(to_inputs),
                               ops.convert_to_numpy(expected[0]), rtol=1e-5, atol=1e-5)
    if learned:
        np.testing.assert_allclose(ops.convert_to_numpy(to_kernel),
                                   ops.convert_to_numpy(expected[1]), rtol=1e-5, atol=1e-5)
    else:
        assert to_kernel is None


def test_symmetric_sends_the_signal_through_W_and_leaves_the_network_as_it_is():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert with_feedback(model, "symmetric") is model


def direct_network(seed=5):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, use_bias=False)(keras.layers.Identity()(inputs))
    relu = keras.layers.ReLU()(hidden)
    output = keras.layers.Dense(3, use_bias=False)(relu)
    network = with_feedback(keras.Model(inputs, output), "direct", seed=seed)
    outer = keras.Input((4,))
    return keras.Model(outer, network(Shift()(outer)))


def test_direct_feedback_reaches_every_layer_from_the_output():
    model = direct_network()
    first, second = [layer for layer in layers_of(model) if isinstance(layer, keras.layers.Dense)]
    d1, d2 = (ops.convert_to_numpy(m)
              for m in next(la for la in layers_of(model) if isinstance(la, DirectFeedback)).matrices)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4)).astype("float32")
    upstream = rng.standard_normal(3).astype("float32")
    grads = gradients(model, x, lambda y: ops.sum(y * ops.convert_to_tensor(upstream)))
    w1, w2 = ops.convert_to_numpy(first.kernel), ops.convert_to_numpy(second.kernel)
    a = x[0] @ w1
    np.testing.assert_allclose(grads[0], d1 @ upstream, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads[1], np.outer(x[0], (a > 0) * (d2 @ upstream)),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads[2], np.outer(np.maximum(a, 0), upstream), rtol=1e-5,
                               atol=1e-7)
    assert not np.allclose(d2 @ upstream, w2 @ upstream)


@pytest.mark.parametrize("kind", ["random", "direct"])
def test_brainprops_signal_comes_from_the_chosen_unit_only(kind):
    model, layer = (direct_network(), None) if kind == "direct" else one_layer("dense", kind)
    x = np.random.default_rng(2).standard_normal((1, *model.input_shape[1:])).astype("float32")
    q = ops.convert_to_numpy(model(x))[0]
    chosen, reward = 1, 1.0
    grads = gradients(model, x, lambda y: brainprop_loss(y, ops.convert_to_tensor([reward]),
                                                         ops.convert_to_tensor([chosen])))
    upstream = np.zeros(3, "float32")
    upstream[chosen] = q[chosen] - reward  # d 1/2 (r - Q_s)^2 / dQ: the chosen unit's RPE
    if kind == "direct":
        d1 = ops.convert_to_numpy(
            next(la for la in layers_of(model) if isinstance(la, DirectFeedback)).matrices[0])
        expected = d1 @ upstream
    else:
        expected = feedback_of(model, layer, kind) @ upstream
    np.testing.assert_allclose(grads[0], expected, rtol=1e-5, atol=1e-7)


def trained_one_step(model, learning_rate=0.1):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, *model.input_shape[1:])).astype("float32")
    y = rng.standard_normal((4, *model.output_shape[1:])).astype("float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("kind", ["random", "direct"])
def test_random_and_direct_feedback_stay_fixed(kind):
    model = direct_network() if kind == "direct" else one_layer("conv-same-2", kind)[0]
    feedback = [w for layer in layers_of(model) if getattr(layer, "feeds_back", False)
                for w in layer.weights]
    before = [ops.convert_to_numpy(w) for w in feedback]
    kernels = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    trained_one_step(model)
    for weight, value in zip(feedback, before, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(weight), value)
    assert any(not np.array_equal(ops.convert_to_numpy(w), v)
               for w, v in zip(model.trainable_weights, kernels, strict=True))


def test_sign_feedback_follows_the_signs_of_W():
    model, layer = one_layer("dense", "sign")
    path = next(la for la in layers_of(model) if isinstance(la, FeedbackPath))
    scale = float(ops.convert_to_numpy(path.feedback))
    assert scale == pytest.approx(np.mean(np.abs(ops.convert_to_numpy(layer.kernel))))
    layer.kernel.assign(-layer.kernel)  # every sign flipped, as training would flip some
    trained_one_step(model)
    x = np.ones((1, 5), "float32")
    upstream = np.arange(3, dtype="float32")
    grads = gradients(model, x, lambda y: ops.sum(y * ops.convert_to_tensor(upstream)))
    kernel = ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(grads[0], (np.sign(kernel) * scale) @ upstream, rtol=1e-5)


@pytest.mark.parametrize("name", ["dense", "conv-same-2", "loccon-1"])
def test_kolen_pollack_gives_B_the_update_of_W_so_W_minus_B_shrinks_by_the_decay(name):
    decay = 0.05
    kind = dataclasses.replace(FEEDBACK["kolen-pollack"], decay=decay)
    model, layer = one_layer(name, kind)
    path = next(la for la in layers_of(model) if isinstance(la, FeedbackPath))
    before = ops.convert_to_numpy(layer.kernel) - ops.convert_to_numpy(path.feedback)
    trained_one_step(model, learning_rate=0.1)
    after = ops.convert_to_numpy(layer.kernel) - ops.convert_to_numpy(path.feedback)
    assert not np.allclose(ops.convert_to_numpy(path.feedback), 0)
    np.testing.assert_allclose(after, (1 - 0.1 * decay) * before, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["dense", "loccon-1"])
def test_kolen_pollacks_decay_takes_the_rate_of_W_and_of_B_each_step_outside_the_loss(name):
    # Targets equal to the outputs: no learning signal, so the step is the decay alone.
    decay = 0.05
    kind = dataclasses.replace(FEEDBACK["kolen-pollack"], decay=decay)
    model, layer = one_layer(name, kind)
    path = next(la for la in layers_of(model) if isinstance(la, FeedbackPath))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(3).standard_normal((4, *model.input_shape[1:])).astype("float32")
    y = ops.convert_to_numpy(model(x))
    kernel, feedback = (ops.convert_to_numpy(w) for w in (layer.kernel, path.feedback))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.kernel), (1 - 0.1 * decay) * kernel,
                               rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(path.feedback),
                               (1 - 0.1 * decay) * feedback, rtol=1e-6)
    assert history.history["loss"] == [0.0]  # the decay's penalty is not logged


def test_a_layer_the_feedback_cannot_serve_is_refused_in_one_line_naming_it():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.raises(BrainPropError, match="DepthwiseConv2D layer 'depthwise'"):
        with_feedback(model, "random")
    with pytest.raises(BrainPropError, match="unknown feedback 'mirror'"):
        get_feedback("mirror")


# --- the paper's networks -----------------------------------------------------------------


def paper_network(architecture, feedback, input_shape=(8, 8, 1), steps_per_execution=1):
    keras.utils.set_random_seed(2)
    rule = dataclasses.replace(RULES["BrainProp"], feedback=feedback)
    model = build_model(ARCHITECTURES[architecture], rule, input_shape, 4, seed=2,
                        batch_size=8)
    return compile_model(model, rule, 0.1, steps_per_execution=steps_per_execution)


def fit_a_little(model):
    rng = np.random.default_rng(4)
    x = rng.random((16, *model.input_shape[1:])).astype("float32")
    y = rng.integers(0, 4, 16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return [ops.convert_to_numpy(w) for w in model.weights]


def test_symmetric_builds_the_network_as_without_feedback_and_trains_it_bit_for_bit():
    plain = paper_network("conv", RULES["BrainProp"].feedback)
    symmetric = paper_network("conv", "symmetric")
    assert not any(isinstance(layer, (FeedbackPath, StopSignal, DirectFeedback))
                   for layer in symmetric.layers)
    assert [la.name for la in plain.layers] == [la.name for la in symmetric.layers]
    for a, b in zip(fit_a_little(plain), fit_a_little(symmetric), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", [k for k in FEEDBACK if k != "symmetric"])
def test_two_trainings_of_the_same_seed_end_with_the_same_weights(kind):
    # The paper's conv network at MNIST's size, 20 steps in compiled calls of 10: a step
    # that reads a variable after the optimiser wrote it, only some of the time, shows up
    # as a difference between the two.
    rng = np.random.default_rng(4)
    x = rng.random((160, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 4, 160)
    trained = []
    for _ in range(2):
        keras.backend.clear_session()
        model = paper_network("conv", kind, input_shape=(28, 28, 1), steps_per_execution=10)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        trained.append([ops.convert_to_numpy(w) for w in model.weights])
    for first, second in zip(*trained, strict=True):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", [k for k in FEEDBACK if k != "symmetric"])
@pytest.mark.parametrize("architecture", ["conv", "loccon"])
def test_every_kind_trains_the_papers_networks_with_their_forward_pass_unchanged(
        kind, architecture):
    plain = paper_network(architecture, "symmetric")
    model = paper_network(architecture, kind)
    shared = [w.path for w in plain.weights]
    assert [w.path for w in model.weights if w.path in shared] == shared
    x = np.random.default_rng(5).random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(plain(x)))
    weights = fit_a_little(model)
    assert all(np.isfinite(w).all() for w in weights)


@pytest.mark.parametrize("kind", [k for k in FEEDBACK if k != "symmetric"])
def test_a_network_with_feedback_saved_whole_loads_with_its_feedback(kind, tmp_path):
    if kind == "kolen-pollack":
        kind = dataclasses.replace(FEEDBACK[kind], decay=0.02)  # not the default, kept
    model = paper_network("loccon", kind)
    fit_a_little(model)  # W and a learned B away from where they started
    model.save(tmp_path / "network.keras")
    loaded = keras.models.load_model(tmp_path / "network.keras")
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for ours, theirs in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs))
    paths = [[(la.kind, la.linear.layer.name) for la in layers_of(network)
              if isinstance(la, FeedbackPath)] for network in (loaded, model)]
    assert paths[0] == paths[1] and (get_feedback(kind).direct or paths[0])
    # The signal goes down through the same B: the same gradient for every weight
    # (inference: the same network without dropout's random draws).
    rng = np.random.default_rng(6)
    x = rng.random((2, 8, 8, 1)).astype("float32")
    upstream = ops.convert_to_tensor(rng.standard_normal((2, 4)).astype("float32"))
    found = [gradients(network, x, lambda y: ops.sum(y * upstream), training=False)
             for network in (loaded, model)]
    for ours, theirs in zip(*found, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", [k for k in FEEDBACK if k != "symmetric"])
def test_without_feedback_is_the_same_network_sharing_its_weights_trained_by_backpropagation(
        kind):
    plain = paper_network("conv", "symmetric")
    model = paper_network("conv", kind)
    exact = without_feedback(model)
    assert has_feedback(model) and not has_feedback(exact) and not has_feedback(plain)
    assert not any(isinstance(layer, StopSignal) for layer in exact.layers)
    assert {id(w) for w in exact.weights} <= {id(w) for w in model.weights}
    assert [w.path for w in exact.weights] == [w.path for w in plain.weights]
    x = np.random.default_rng(6).random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(exact(x)), ops.convert_to_numpy(model(x)))
    # Its gradients are backpropagation's: those of the network built without feedback.
    upstream = np.random.default_rng(7).standard_normal((2, 4)).astype("float32")
    readout = lambda y: ops.sum(y * ops.convert_to_tensor(upstream))  # noqa: E731
    for ours, plains in zip(gradients(exact, x, readout), gradients(plain, x, readout),
                            strict=True):
        np.testing.assert_allclose(ours, plains, rtol=1e-5, atol=1e-7)
