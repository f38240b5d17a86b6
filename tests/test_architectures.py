"""The architectures and hyperparameters of the paper and the original release."""

import dataclasses

import keras
import numpy as np
import pytest

from brainprop.data.datasets import paper_combinations
from brainprop.model import BrainProp
from brainprop.model.rules import RULES
from brainprop.nets.architectures import (
    ARCHITECTURES,
    LAYER_KINDS,
    Architecture,
    check_input,
    smallest_side,
    weight_sizes,
)
from brainprop.nets.build import build_model, compile_model
from brainprop.nets.layers import LocallyConnected2D
from brainprop.nets.weights import weighted_layers
from brainprop.utils.errors import BrainPropError
from brainprop.utils.exports import resolve

BN = lambda c: [(c,), (c,), (c,), (c,)]  # noqa: E731  gamma, beta, moving mean, variance

# The original release's weight shapes, layer by layer.
EXPECTED_SHAPES = {
    ("dense", (28, 28, 1), 10): [[(784, 1500)], [(1500, 1000)], [(1000, 500)], [(500, 10)]],
    ("conv", (28, 28, 1), 10): [
        [(3, 3, 1, 32)], BN(32), [(3, 3, 32, 32)], BN(32), [(6272, 500)], [(500, 10)]
    ],
    ("loccon", (28, 28, 1), 10): [
        [(676, 9, 32)], BN(32), [(144, 288, 32)], BN(32), [(4608, 500)], [(500, 10)]
    ],
    ("conv", (32, 32, 3), 100): [
        [(3, 3, 3, 32)], BN(32), [(3, 3, 32, 32)], BN(32), [(8192, 500)], [(500, 100)]
    ],
    ("loccon", (32, 32, 3), 10): [
        [(900, 27, 32)], BN(32), [(196, 288, 32)], BN(32), [(6272, 500)], [(500, 10)]
    ],
    ("deep", (32, 32, 3), 10): [
        [(3, 3, 3, 64)], BN(64), [(3, 3, 64, 64)], BN(64),
        [(3, 3, 64, 128)], BN(128), [(3, 3, 128, 128)], BN(128),
        [(3, 3, 128, 128)], BN(128), [(3, 3, 128, 128)], BN(128),
        [(3, 3, 128, 128)], BN(128), [(2048, 500)], [(500, 10)],
    ],
    ("deep", (64, 64, 3), 200): [
        [(3, 3, 3, 64)], BN(64), [(3, 3, 64, 64)], BN(64),
        [(3, 3, 64, 128)], BN(128), [(3, 3, 128, 128)], BN(128),
        [(3, 3, 128, 128)], BN(128), [(3, 3, 128, 128)], BN(128),
        [(3, 3, 128, 128)], BN(128), [(8192, 500)], [(500, 200)],
    ],
}


@pytest.mark.parametrize("key", list(EXPECTED_SHAPES), ids=lambda k: f"{k[0]}-{k[2]}")
@pytest.mark.parametrize("algorithm", list(RULES))
def test_weight_shapes_come_in_the_original_order(key, algorithm):
    architecture, input_shape, n_classes = key
    model = build_model(ARCHITECTURES[architecture], RULES[algorithm], input_shape, n_classes)
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in weighted_layers(model)]
    assert shapes == EXPECTED_SHAPES[key]
    expected_params = sum(int(np.prod(s)) for layer in EXPECTED_SHAPES[key] for s in layer)
    assert model.count_params() == expected_params


def test_deep_on_cifar10_has_1734216_parameters():
    assert build_model(ARCHITECTURES["deep"], RULES["BrainProp"], (32, 32, 3), 10).count_params() == 1_734_216


LAYER_ORDER = {
    "dense": "Flatten Dense ReLU Dense ReLU Dense ReLU Dense",
    "conv": "Conv2D ReLU BatchNormalization Conv2D ReLU BatchNormalization Dropout "
    "Flatten Dense ReLU Dropout Dense",
    "loccon": "LocallyConnected2D ReLU BatchNormalization LocallyConnected2D ReLU "
    "BatchNormalization Dropout Flatten Dense ReLU Dropout Dense",
    "deep": " ".join(
        ["Conv2D ReLU BatchNormalization"] * 2 + ["MaxPooling2D Dropout"]
        + ["Conv2D ReLU BatchNormalization"] * 2 + ["MaxPooling2D Dropout"]
        + ["Conv2D ReLU BatchNormalization"] * 3 + ["MaxPooling2D Dropout"]
        + ["Flatten Dense ReLU Dropout Dense"]
    ),
}


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_layers_follow_spec_order_with_batchnorm_after_relu(architecture):
    model = build_model(ARCHITECTURES[architecture], RULES["EBP"], (32, 32, 3), 10)
    names = " ".join(type(layer).__name__ for layer in model.layers[1:])
    assert names == LAYER_ORDER[architecture]


def test_deep_dropout_rates_and_conv_strides():
    model = build_model(ARCHITECTURES["deep"], RULES["EBP"], (32, 32, 3), 10)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.3, 0.3, 0.8, 0.3]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.strides == (1, 1) and c.padding == "same" for c in convs)
    shallow = build_model(ARCHITECTURES["conv"], RULES["EBP"], (32, 32, 3), 10)
    strides = [c.strides for c in shallow.layers if isinstance(c, keras.layers.Conv2D)]
    assert strides == [(1, 1), (2, 2)]
    loccon = build_model(ARCHITECTURES["loccon"], RULES["EBP"], (32, 32, 3), 10)
    strides = [c.strides for c in loccon.layers if isinstance(c, LocallyConnected2D)]
    assert strides == [(1, 1), (2, 2)]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_no_layer_has_a_bias(architecture):
    model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], (32, 32, 3), 10)
    assert not [w.path for w in model.weights if "bias" in w.path]


def test_outputs_are_linear_brainprop_model_and_ebp_cross_entropy_from_logits():
    brainprop, ebp = (compile_model(build_model(ARCHITECTURES["conv"], rule, (28, 28, 1), 10), rule, 0.1)
                      for rule in (RULES["BrainProp"], RULES["EBP"]))
    assert isinstance(brainprop, BrainProp) and not isinstance(ebp, BrainProp)
    assert brainprop.layers[-1].activation is keras.activations.linear
    assert ebp.layers[-1].activation is keras.activations.linear
    assert ebp.loss.get_config()["from_logits"] is True


def test_brainprop_loss_divides_by_the_configured_or_given_batch_size():
    assert build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (28, 28, 1), 10).batch_size == 128
    assert build_model(ARCHITECTURES["loccon"], RULES["BrainProp"], (28, 28, 1), 10).batch_size == 32
    model = build_model(ARCHITECTURES["loccon"], RULES["BrainProp"], (28, 28, 1), 10, batch_size=50)
    assert model.batch_size == 50


def test_ebp_example_with_label_probability_below_1e7_gets_the_full_gradient():
    # Logits 20, 0, -5 and label 2: p(label) = 1.4e-11.  Clipping probabilities at
    # 1e-7 would leave no gradient; from the logits it is x (softmax(z) - onehot(y)).
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(3, use_bias=False, name="output")(inputs)
    model = compile_model(keras.Model(inputs, outputs), RULES["EBP"], learning_rate=0.5)
    kernel = np.array([[20.0, 0.0, -5.0], [0.0, 0.0, 0.0]], "float32")
    model.layers[-1].set_weights([kernel])
    x, y = np.array([[1.0, 2.0]], "float32"), np.array([2], "int32")
    logits = x @ kernel
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert p[0, 2] < 1e-7
    gradient = x.T @ (p - np.eye(3)[y])
    model.fit(x, y, batch_size=1, epochs=1, verbose=0)
    step = model.layers[-1].get_weights()[0] - kernel
    np.testing.assert_allclose(step, -0.5 * gradient, rtol=1e-6, atol=1e-7)
    assert step[1, 2] == pytest.approx(0.5 * 2.0, rel=1e-6)  # nowhere near zero


def test_init_std_replaces_the_architectures():
    keras.utils.set_random_seed(1)
    wider = dataclasses.replace(ARCHITECTURES["dense"], init_std=0.1)
    model = build_model(wider, RULES["BrainProp"], (28, 28, 1), 10)
    for layer in weighted_layers(model):
        assert keras.ops.convert_to_numpy(layer.kernel).std() == pytest.approx(0.1, rel=0.03)
    keras.utils.set_random_seed(1)
    default = build_model(ARCHITECTURES["dense"], RULES["BrainProp"], (28, 28, 1), 10)
    np.testing.assert_allclose(  # the same draws, scaled
        default.get_weights()[0] * 10, model.get_weights()[0], rtol=1e-5, atol=1e-7
    )


def test_l2_penalty_on_every_kernel_of_deep_only():
    deep = build_model(ARCHITECTURES["deep"], RULES["BrainProp"], (32, 32, 3), 10)
    kernels = [layer for layer in weighted_layers(deep) if hasattr(layer, "kernel")]
    assert len(kernels) == 9
    assert all(layer.kernel_regularizer.l2 == pytest.approx(0.0005) for layer in kernels)
    assert len(deep.losses) == 9
    assert not build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (32, 32, 3), 10).losses


@pytest.mark.parametrize("architecture,std", [("dense", 0.01), ("conv", 0.005), ("deep", 0.005)])
def test_kernels_drawn_from_normal_with_spec_std(architecture, std):
    keras.utils.set_random_seed(1)
    model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], (32, 32, 3), 10)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][0]
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    assert abs(kernel.mean()) < 0.1 * std
    assert kernel.std() == pytest.approx(std, rel=0.02)


def test_hyperparameter_table_matches_spec():
    table = {name: (a.batch_size, a.learning_rate, a.init_std, a.l2) for name, a in ARCHITECTURES.items()}
    assert table == {
        "dense": (128, 0.1, 0.01, 0.0),
        "conv": (128, 0.1, 0.005, 0.0),
        "loccon": (32, 0.1, 0.005, 0.0),
        "deep": (128, 0.1, 0.005, 0.0005),
    }


def test_same_seed_builds_identical_weights():
    keras.utils.set_random_seed(7)
    a = build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (28, 28, 1), 10).get_weights()
    keras.utils.set_random_seed(7)
    b = build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (28, 28, 1), 10).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _fit_two_epochs(algorithm, steps_per_execution):
    from brainprop.data.pipeline import ImageBatches, fit_input

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 8, 8, 1), dtype=np.uint8)  # small: quick to compile
    labels = rng.integers(0, 10, 100)
    keras.utils.set_random_seed(3)
    model = build_model(ARCHITECTURES["conv"], RULES[algorithm], (8, 8, 1), 10, seed=3)
    compile_model(model, RULES[algorithm], 0.1, steps_per_execution=steps_per_execution)
    history = model.fit(
        fit_input(ImageBatches(images, labels, 16, shuffle=True, seed=3)),  # 7, the last of 4
        validation_data=fit_input(ImageBatches(images[:40], labels[:40], 16)),
        epochs=2,
        shuffle=False,
        verbose=0,
    ).history
    return history, [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", list(RULES))
def test_steps_per_execution_trains_exactly_as_one_step_per_call(algorithm):
    """Several batches per compiled call are the same steps: same history, same weights
    (random action choices and dropout included, and a last call with fewer batches)."""
    one_history, one_weights = _fit_two_epochs(algorithm, 1)
    many_history, many_weights = _fit_two_epochs(algorithm, 3)

    assert set(one_history) == set(many_history)
    for key, values in one_history.items():
        np.testing.assert_array_equal(many_history[key], values, err_msg=key)
    for one, many in zip(one_weights, many_weights, strict=True):
        np.testing.assert_array_equal(many, one)


def test_parameter_counts_in_the_docs_are_those_of_the_networks():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "architectures.md").read_text()
    table = docs.split("| network | MNIST | CIFAR10 | CIFAR100 | TinyImageNet |")[1]
    shapes = {"MNIST": ((28, 28, 1), 10), "CIFAR10": ((32, 32, 3), 10),
              "CIFAR100": ((32, 32, 3), 100), "TinyImageNet": ((64, 64, 3), 200)}
    documented = {}
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for dataset, cell in zip(shapes, cells[1:], strict=True):
            if cell:
                documented[(dataset, cells[0])] = int(cell.replace(",", ""))
    assert set(documented) == {(d, a) for d, archs in paper_combinations().items() for a in archs}
    for (dataset, architecture), count in documented.items():
        model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], *shapes[dataset])
        assert model.count_params() == count


# --- images of any size: what each network fits ------------------------------------------


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(28, 28, 1), (9, 13, 3), (8, 8, 1), (40, 24, 3)])
def test_weight_sizes_count_every_weight_build_model_makes(architecture, shape):
    sizes = weight_sizes(architecture, shape, 7)
    model = build_model(ARCHITECTURES[architecture], RULES["EBP"], shape, 7)
    assert sum(sizes.values()) == model.count_params()
    by_layer = {layer.name: sum(int(np.prod(w.shape)) for w in layer.weights)
                for layer in model.layers if layer.weights}
    assert sizes == by_layer


@pytest.mark.parametrize("architecture, shape, layer", [
    ("deep", (7, 7, 1), "maxpool_26"), ("deep", (64, 3, 3), "maxpool_15"),
    ("loccon", (4, 4, 1), "loccon_4"), ("loccon", (2, 30, 3), "loccon_1"),
])
def test_images_too_small_for_a_network_are_refused_in_one_line(architecture, shape, layer):
    with pytest.raises(BrainPropError) as error:
        check_input(architecture, shape, 10)
    message = str(error.value)
    assert "\n" not in message and layer in message and "another network" in message


@pytest.mark.parametrize("architecture, shape", [
    ("deep", (8, 8, 1)), ("loccon", (5, 5, 1)), ("conv", (1, 1, 1)), ("dense", (1, 1, 3)),
])
def test_the_smallest_images_each_network_fits(architecture, shape):
    check_input(architecture, shape, 2)


def test_a_network_too_large_for_one_tensor_is_refused_before_it_is_built():
    with pytest.raises(BrainPropError) as error:
        check_input("loccon", (2048, 2048, 3), 10)
    assert "dense_9" in str(error.value) and "smaller images" in str(error.value)


def test_each_architecture_knows_its_name():
    assert all(arch.name == name for name, arch in ARCHITECTURES.items())


def test_every_kind_of_layer_is_declared_once_with_its_shape_and_its_keras_layer():
    used = {kind for arch in ARCHITECTURES.values() for kind, *_ in arch.layers}
    assert used <= set(LAYER_KINDS)
    for kind in LAYER_KINDS.values():
        assert callable(kind.shape) and callable(resolve(kind.layer))


@pytest.mark.parametrize("architecture, side", [("deep", 8), ("loccon", 5), ("conv", 1),
                                                ("dense", 1)])
def test_the_smallest_images_are_computed_from_the_layers(architecture, side):
    assert smallest_side(architecture) == side


def test_refusals_name_the_networks_of_the_table(monkeypatch):
    tiny = Architecture("tiny", (("maxpool", 4), ("flatten",)), 32, 0.1, 0.01, 0.0, "valid")
    monkeypatch.setitem(ARCHITECTURES, "tiny", tiny)
    with pytest.raises(BrainPropError) as error:
        check_input("deep", (4, 4, 1), 10)
    assert "deep needs at least 8x8, loccon 5x5, tiny 4x4, dense and conv any size" in str(
        error.value)
    with pytest.raises(BrainPropError) as error:
        check_input("loccon", (2048, 2048, 3), 10)
    assert str(error.value).endswith("use smaller images or another network (tiny)")
