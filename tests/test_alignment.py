"""Alignment with backpropagation: the angles a network with feedback weights logs every
epoch equal those computed by hand in NumPy, change nothing of the training, and reach the
history, the CSV log and the angles' plot; symmetric runs gain nothing."""

import csv
import json
import math

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image
from test_cli import write_learnable_mnist

from brainprop.model.alignment import (
    CHOICE_SEED,
    Alignment,
    angle,
    output_loss,
    weight_angles,
)
from brainprop.model.attention_gated import BrainProp, select_action
from brainprop.model.pathway import DirectFeedback, FeedbackPath, layers_of, with_feedback
from brainprop.runs.cli import main
from brainprop.tables.report import load_runs

LAYERED = ["random", "sign", "kolen-pollack"]
BATCH = 8


def degrees_by_hand(a, b):
    """arccos(<a, b> / (|a| |b|)) in degrees, flattened."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def test_the_angle_is_numpys_arccos_of_the_cosine_and_nan_for_a_zero_vector():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.standard_normal((2, 3, 4))
        assert angle(a, b) == pytest.approx(degrees_by_hand(a, b), abs=1e-9)
    a = rng.standard_normal(6)
    assert angle(a, 3 * a) == 0.0
    assert angle(a, -a) == pytest.approx(180.0)
    assert angle(a, np.array([a[1], -a[0], 0, 0, 0, 0])) == pytest.approx(90.0)
    assert math.isnan(angle(a, np.zeros(6)))


# --- a tiny network: x -> hidden (Dense) -> ReLU -> output (Dense), by hand ----------------


def tiny_network(kind, rule="EBP", seed=3):
    """The network with feedback of `kind`, as BrainProp (exploring often, so the draw
    matters) or compiled for EBP's cross-entropy."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(4, use_bias=False, name="hidden")(inputs)
    output = keras.layers.Dense(3, use_bias=False, name="output")(keras.layers.ReLU()(hidden))
    network = with_feedback(keras.Model(inputs, output), kind, seed=seed)
    if rule == "BrainProp":
        return BrainProp(network.inputs[0], network.outputs[0], epsilon=0.5, seed=seed,
                         batch_size=BATCH)
    network.compile(optimizer="sgd",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return network


def fixed_batch(seed=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, 5)).astype("float32"), rng.integers(0, 3, BATCH)


def layer(model, name):
    return next(la for la in layers_of(model) if la.name == name)


def feedback_to_hidden(model, kind):
    """The matrix through which the output's signal reaches the hidden units, (4, 3)."""
    if kind == "direct":
        direct = next(la for la in layers_of(model) if isinstance(la, DirectFeedback))
        return ops.convert_to_numpy(direct.matrices[0])
    path = next(la for la in layers_of(model)
                if isinstance(la, FeedbackPath) and la.linear.layer.name == "output")
    stored = ops.convert_to_numpy(path.feedback)
    kernel = ops.convert_to_numpy(layer(model, "output").kernel)
    return np.sign(kernel) * stored if kind == "sign" else stored


def step(model, x, y):
    """One training step, so that W (and a learned B) moved from where they started."""
    if isinstance(model, BrainProp):
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    else:
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=model.loss)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("kind", LAYERED)
def test_the_weight_angle_is_the_angle_between_W_and_B_of_every_layer(kind):
    model = tiny_network(kind)
    step(model, *fixed_batch())
    angles = weight_angles(model)
    assert set(angles) == {"weight_angle/hidden", "weight_angle/output"}
    for path in (la for la in layers_of(model) if isinstance(la, FeedbackPath)):
        kernel = ops.convert_to_numpy(path.linear.kernel)
        stored = ops.convert_to_numpy(path.feedback)
        feedback = np.sign(kernel) * stored if kind == "sign" else stored
        expected = degrees_by_hand(kernel, feedback)
        assert 0 < expected < 180
        assert angles[f"weight_angle/{path.linear.layer.name}"] == pytest.approx(expected,
                                                                                 abs=1e-6)
    if kind == "sign":  # B has W's signs: well under 90 degrees
        assert all(value < 90 for value in angles.values())


def test_direct_feedback_has_no_weight_angle_and_an_update_angle_for_every_layer():
    model = tiny_network("direct")
    angles = Alignment(model, *fixed_batch()).angles()
    assert set(angles) == {"update_angle/hidden", "update_angle/output"}


def signal_at_outputs_by_hand(model, q_values, labels):
    """delta = d loss / d outputs: EBP's mean cross-entropy, or BrainProp's loss with the
    fixed draw's choices (the chosen unit's RPE, divided by the batch size)."""
    if not isinstance(model, BrainProp):
        p = np.exp(q_values - q_values.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return (p - np.eye(3)[labels]) / len(labels)
    chosen = ops.convert_to_numpy(select_action(
        ops.convert_to_tensor(q_values), model.epsilon, keras.random.SeedGenerator(CHOICE_SEED)))
    reward = (chosen == labels).astype("float32")
    delta = np.zeros_like(q_values)
    rows = np.arange(len(labels))
    delta[rows, chosen] = (q_values[rows, chosen] - reward) / model.batch_size
    return delta


@pytest.mark.parametrize("rule", ["EBP", "BrainProp"])
@pytest.mark.parametrize("kind", [*LAYERED, "direct"])
def test_the_update_angle_is_the_angle_between_the_two_gradients_computed_by_hand(kind, rule):
    model = tiny_network(kind, rule)
    x, y = fixed_batch()
    step(model, x, y)
    w1 = ops.convert_to_numpy(layer(model, "hidden").kernel)
    w2 = ops.convert_to_numpy(layer(model, "output").kernel)
    a = x @ w1
    h = np.maximum(a, 0)
    delta = signal_at_outputs_by_hand(model, h @ w2, y)
    exact = x.T @ ((delta @ w2.T) * (a > 0))
    made = x.T @ ((delta @ feedback_to_hidden(model, kind).T) * (a > 0))
    expected = degrees_by_hand(made, exact)
    assert 1 < expected < 179  # the feedback is not W: the test can fail

    angles = Alignment(model, x, y).update_angles()
    assert set(angles) == {"update_angle/hidden", "update_angle/output"}
    assert angles["update_angle/hidden"] == pytest.approx(expected, abs=1e-3)
    # The output layer's update is the signal at the outputs times its input: exact.
    assert angles["update_angle/output"] == pytest.approx(0.0, abs=1e-3)


def test_brainprops_choices_are_one_fixed_draw_and_measuring_changes_nothing():
    model = tiny_network("random", "BrainProp")
    x, y = fixed_batch()
    q_values = model(x)
    loss = output_loss(model, q_values, ops.convert_to_tensor(y))
    np.testing.assert_array_equal(ops.convert_to_numpy(loss(q_values)),
                                  ops.convert_to_numpy(output_loss(model, q_values, y)(q_values)))
    alignment = Alignment(model, x, y)
    before = [ops.convert_to_numpy(v).copy() for v in model.variables]
    first, second = alignment.angles(), alignment.angles()
    assert first == second
    # No weight, no feedback weight, no seed state (the selection seed's) has moved.
    assert any("seed" in v.path for v in model.variables)
    for variable, value in zip(model.variables, before, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), value, err_msg=variable.path)


# --- runs of main.py ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    npz = folder / "tiny.npz"
    (write_learnable_mnist(folder, n_train=96, n_test=64, seed=2) / "mnist.npz").rename(npz)
    return npz


def saved_run(npz, out, *feedback):
    assert main([str(npz), "dense", "BrainProp", *feedback, "-s", "--epochs", "2",
                 "--batch-size", "32", "--output-dir", str(out)]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    history = json.loads((out / summary["files"]["history_json"]).read_text())["history"]
    with open(out / summary["files"]["log"], newline="") as f:
        log = list(csv.DictReader(f))
    return summary, history, log


WEIGHT_LAYERS = ["dense_2", "dense_4", "dense_6", "output"]


def test_a_run_with_feedback_logs_every_layers_angles_and_plots_them(tiny_npz, tmp_path):
    out = tmp_path / "out"
    summary, history, log = saved_run(tiny_npz, out, "--feedback", "kolen-pollack")
    angles = {f"{name}/{la}" for name in ("weight_angle", "update_angle") for la in WEIGHT_LAYERS}
    assert angles <= set(history) and angles <= set(log[0])
    assert {key for key in history if "angle" in key} == angles
    for key in angles:
        assert len(history[key]) == 2 and all(0 <= v <= 180 for v in history[key])
        np.testing.assert_allclose([float(row[key]) for row in log], history[key])
    assert history["update_angle/output"] == [0.0, 0.0]  # the output's update is exact
    png = out / summary["files"]["angles_png"]
    assert (out / summary["files"]["angles_pdf"]).read_bytes().startswith(b"%PDF")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 600
    # The report reads the history, angles and all.
    (run,) = load_runs(out)
    assert run.history["weight_angle/output"] == pytest.approx(history["weight_angle/output"])


def test_a_symmetric_run_gains_no_angle_and_no_angles_plot(tiny_npz, tmp_path):
    out = tmp_path / "out"
    summary, history, log = saved_run(tiny_npz, out)
    assert not [key for key in [*history, *log[0]] if "angle" in key]
    assert not {"angles_png", "angles_pdf"} & set(summary["files"])
    assert not list(out.glob("*_angles.*"))


@pytest.mark.parametrize("feedback,angles", [("symmetric", False), ("sign", True)])
def test_print_config_names_the_angles_plot_of_a_run_with_feedback_only(
        tmp_path, capsys, feedback, angles):
    assert main(["MNIST", "dense", "EBP", "-s", "--feedback", feedback, "--output-dir",
                 str(tmp_path / "out"), "--print-config"]) == 0
    files = json.loads(capsys.readouterr().out)["runs"][0]["files"]
    assert ("angles_png" in files) is angles
    if angles:
        assert files["angles_png"] == str(tmp_path / "out" / f"MNIST_dense_EBP_{feedback}_seed1_angles.png")
