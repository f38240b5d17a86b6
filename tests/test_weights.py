"""Weight files: the project's own and the original release's Keras 2 HDF5."""

import collections
import dataclasses

import h5py
import keras
import numpy as np
import pytest

from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model
from brainprop.nets.weights import load_weights, weighted_layers
from brainprop.utils.errors import BrainPropError

# Keras 2 (TF 2.x) class names as Sequential auto-named them.
KERAS2_NAMES = {
    "Conv2D": "conv2d",
    "LocallyConnected2D": "locally_connected2d",
    "BatchNormalization": "batch_normalization",
    "Dense": "dense",
    "ReLU": "activation",
    "MaxPooling2D": "max_pooling2d",
    "Dropout": "dropout",
    "Flatten": "flatten",
}
KERAS2_WEIGHT_NAMES = {
    "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
}


def saved_weights(model, path):
    """`path`, holding `model`'s weights as Keras' `save_weights` writes them."""
    model.save_weights(str(path))
    return path


def write_legacy_h5(model: keras.Model, path, algorithm="BrainProp", as_full_model=False):
    """Write `model`'s weights as TF 2.x `model.save_weights("x.h5")` did."""
    counts = collections.Counter()
    layer_names = []
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if as_full_model else f
        layers = model.layers[1:]
        for index, layer in enumerate(layers):
            kind = type(layer).__name__
            if index == len(layers) - 1 and algorithm == "BrainProp":
                name = "brain_prop_layer"
            else:
                base = KERAS2_NAMES[kind]
                name = base if counts[base] == 0 else f"{base}_{counts[base]}"
                counts[base] += 1
            layer_names.append(name.encode())
            group = root.create_group(name)
            short = KERAS2_WEIGHT_NAMES.get(kind, ["kernel"])[: len(layer.weights)]
            names = [f"{name}/{w}:0".encode() for w in short]
            group.attrs["weight_names"] = np.asarray(names)  # fixed-length bytes, as Keras 2
            for weight_name, weight in zip(names, layer.weights, strict=True):
                group.create_dataset(weight_name.decode(), data=keras.ops.convert_to_numpy(weight))
        root.attrs["layer_names"] = np.asarray(layer_names)
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.3.0-tf"


def trained_looking(model, seed=0):
    """Give every weight, BatchNorm statistics included, a distinct random value."""
    rng = np.random.default_rng(seed)
    for layer in weighted_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            values = [0.5 + rng.random(w.shape) for w in layer.weights]
        else:
            values = [rng.normal(0, 0.05, w.shape) for w in layer.weights]
        layer.set_weights([v.astype("float32") for v in values])
    return model


def images(shape, n=6):
    return np.random.default_rng(1).random((n, *shape)).astype("float32")


@pytest.mark.parametrize(
    "architecture,input_shape,n_classes",
    [("deep", (32, 32, 3), 10), ("loccon", (28, 28, 1), 10), ("dense", (28, 28, 1), 10)],
)
@pytest.mark.parametrize("algorithm", ["BrainProp", "EBP"])
def test_legacy_keras2_file_loads_by_order_and_predicts_identically(
    tmp_path, architecture, input_shape, n_classes, algorithm
):
    source = trained_looking(
        build_model(ARCHITECTURES[architecture], RULES[algorithm], input_shape, n_classes))
    path = tmp_path / f"CIFAR10_{algorithm}_weights.h5"
    write_legacy_h5(source, path, algorithm)
    with h5py.File(path, "r") as f:  # the layout the original release shipped
        assert f.attrs["layer_names"].dtype.kind == "S"
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[-1] == ("brain_prop_layer" if algorithm == "BrainProp"
                             else "dense_3" if architecture == "dense" else "dense_1")
        assert {"layer_names", "backend", "keras_version"} <= set(f.attrs)

    keras.utils.set_random_seed(99)
    target = build_model(ARCHITECTURES[architecture], RULES[algorithm], input_shape, n_classes)
    load_weights(target, path)
    x = images(input_shape)
    np.testing.assert_allclose(
        target.predict(x, verbose=0), source.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def with_softmax_output(model: keras.Model) -> keras.Model:
    """The release's EBP network: the same layers, the output through a softmax."""

    def clone(layer):
        config = layer.get_config()
        if layer.name == "output":
            config["activation"] = "softmax"
        return type(layer).from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def test_release_ebp_file_gives_the_softmax_of_our_logits_and_the_same_argmax(tmp_path):
    keras.utils.set_random_seed(5)
    ours = build_model(ARCHITECTURES["conv"], RULES["EBP"], (28, 28, 1), 10)
    release = with_softmax_output(ours)
    assert release.layers[-1].activation is keras.activations.softmax
    trained_looking(release, seed=3)
    write_legacy_h5(release, tmp_path / "CIFAR10_EBP_weights.h5", "EBP")
    load_weights(ours, tmp_path / "CIFAR10_EBP_weights.h5")
    x = images((28, 28, 1), n=32)
    logits = ours.predict(x, verbose=0)
    probabilities = release.predict(x, verbose=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits)), probabilities, atol=1e-6
    )
    np.testing.assert_array_equal(logits.argmax(-1), probabilities.argmax(-1))
    assert len(set(logits.argmax(-1))) > 1


def test_legacy_full_model_file_loads_its_model_weights_group(tmp_path):
    source = trained_looking(build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (28, 28, 1), 10))
    write_legacy_h5(source, tmp_path / "full.h5", as_full_model=True)
    target = build_model(ARCHITECTURES["conv"], RULES["BrainProp"], (28, 28, 1), 10)
    load_weights(target, tmp_path / "full.h5")
    x = images((28, 28, 1))
    np.testing.assert_allclose(target.predict(x, verbose=0), source.predict(x, verbose=0), atol=1e-6)


def test_own_weight_file_round_trips(tmp_path):
    source = trained_looking(build_model(ARCHITECTURES["loccon"], RULES["EBP"], (28, 28, 1), 10))
    path = saved_weights(source, tmp_path / "run_weights.weights.h5")
    assert path.exists() and not list(tmp_path.glob(".*partial*"))
    target = build_model(ARCHITECTURES["loccon"], RULES["EBP"], (28, 28, 1), 10)
    load_weights(target, path)
    for a, b in zip(source.get_weights(), target.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def one_line_error(model, path) -> str:
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(BrainPropError) as error:
        load_weights(model, path)
    message = str(error.value)
    assert "\n" not in message
    for a, b in zip(before, model.get_weights(), strict=True):  # nothing half-loaded
        np.testing.assert_array_equal(a, b)
    return message


@pytest.mark.parametrize("writer", ["legacy", "own"])
def test_file_for_other_number_of_classes_names_layer_and_shapes(tmp_path, writer):
    source = build_model(ARCHITECTURES["deep"], RULES["BrainProp"], (32, 32, 3), 100)
    path = tmp_path / ("w.h5" if writer == "legacy" else "w.weights.h5")
    write_legacy_h5(source, path) if writer == "legacy" else saved_weights(source, path)
    message = one_line_error(build_model(ARCHITECTURES["deep"], RULES["BrainProp"], (32, 32, 3), 10), path)
    assert "layer 16" in message and "(500, 10)" in message and "(500, 100)" in message


@pytest.mark.parametrize("writer", ["legacy", "own"])
def test_file_for_other_architecture_is_refused(tmp_path, writer):
    source = build_model(ARCHITECTURES["conv"], RULES["EBP"], (28, 28, 1), 10)
    path = tmp_path / ("w.h5" if writer == "legacy" else "w.weights.h5")
    write_legacy_h5(source, path, "EBP") if writer == "legacy" else saved_weights(source, path)
    message = one_line_error(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10), path)
    assert "architecture" in message


def test_missing_and_non_hdf5_files_are_refused(tmp_path):
    model = build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10)
    assert "does not exist" in one_line_error(model, tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    assert "not an HDF5" in one_line_error(model, tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    assert "no Keras weights" in one_line_error(model, tmp_path / "empty.h5")


def test_truncated_file_is_refused(tmp_path):
    source = build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10)
    write_legacy_h5(source, tmp_path / "w.h5", "EBP")
    data = (tmp_path / "w.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    one_line_error(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10), tmp_path / "cut.h5")


def foreign_file(path, kind):
    """An HDF5 file laid out almost as a weight file, one entry of the wrong kind."""
    with h5py.File(path, "w") as f:
        if kind == "layers-dataset":
            f.create_dataset("layers", data=np.zeros(3))
        elif kind == "scalar-layer-names":
            f.attrs["layer_names"] = b"dense"
            f.create_group("dense").attrs["weight_names"] = np.asarray([b"dense/kernel:0"])
        elif kind == "layer-is-dataset":
            f.attrs["layer_names"] = np.asarray([b"dense"])
            f.create_dataset("dense", data=np.zeros(3))
        elif kind == "weight-is-group":
            f.attrs["layer_names"] = np.asarray([b"dense"])
            layer = f.create_group("dense")
            layer.attrs["weight_names"] = np.asarray([b"kernel:0"])
            layer.create_group("kernel:0")
        elif kind == "numbers-as-names":
            f.attrs["layer_names"] = np.arange(3)
        elif kind == "model-weights-dataset":
            f.create_dataset("model_weights", data=np.zeros(3))
        elif kind == "bad-utf8-name":
            f.attrs["layer_names"] = np.asarray([b"\xff\xfe"])
        elif kind == "link-loop":
            f.attrs["layer_names"] = np.asarray([b"dense"])
            f["dense"] = h5py.SoftLink("/dense")


@pytest.mark.parametrize("kind", ["layers-dataset", "scalar-layer-names", "layer-is-dataset",
                                  "weight-is-group", "numbers-as-names", "model-weights-dataset",
                                  "bad-utf8-name", "link-loop"])
def test_foreign_hdf5_file_is_refused_in_one_line(tmp_path, kind):
    path = tmp_path / "foreign.h5"
    foreign_file(path, kind)
    message = one_line_error(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10), path)
    assert (message.startswith(f"{path} is not a Keras weight file (")
            or message.startswith(f"{path} could not be read ("))


def test_release_file_holding_text_where_weights_were_is_refused_in_one_line(tmp_path):
    model = build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10)
    path = tmp_path / "w.h5"
    write_legacy_h5(model, path, "EBP")
    with h5py.File(path, "r+") as f:
        layers = [f[layer.decode()] for layer in f.attrs["layer_names"]]
        layer = next(layer for layer in layers if len(layer.attrs["weight_names"]))
        name = layer.attrs["weight_names"][0].decode()
        shape = layer[name].shape
        del layer[name]
        layer.create_dataset(name, data=np.full(shape, b"x"))
    message = one_line_error(model, path)
    assert message.startswith(f"{path} is not a Keras weight file (layer 1 (")
    assert "not numbers" in message


@pytest.mark.parametrize("feedback", ["random", "sign", "kolen-pollack", "direct"])
def test_legacy_file_loads_into_a_network_with_feedback_weights_which_keep_theirs(
    tmp_path, feedback
):
    source = trained_looking(build_model(ARCHITECTURES["conv"], RULES["BrainProp"],
                                         (28, 28, 1), 10))
    path = tmp_path / "CIFAR10_BrainProp_weights.h5"
    write_legacy_h5(source, path)
    keras.utils.set_random_seed(99)
    rule = dataclasses.replace(RULES["BrainProp"], feedback=feedback)
    target = build_model(ARCHITECTURES["conv"], rule, (28, 28, 1), 10)
    feedback_weights = [w for layer in target.layers if getattr(layer, "feeds_back", False)
                        for w in layer.weights]
    assert feedback_weights
    before = [keras.ops.convert_to_numpy(w) for w in feedback_weights]
    load_weights(target, path)
    x = images((28, 28, 1))
    np.testing.assert_allclose(
        target.predict(x, verbose=0), source.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    for weight, value in zip(feedback_weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)
