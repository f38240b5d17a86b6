"""Per-class accuracy: exact counts, and one vector per epoch in the training history."""

import keras
import numpy as np
import pytest
from keras import ops

from brainprop.data.datasets import build_dataset
from brainprop.model import BrainProp, to_brainprop
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model, compile_model
from brainprop.nets.metrics import ClassAccuracy
from brainprop.train.training import TrainingConfig, train


def test_class_accuracy_counts_each_class_separately_across_batches():
    metric = ClassAccuracy(4)
    metric.update_state(np.array([0, 1, 1]), np.array([[9, 0, 0, 0], [9, 0, 0, 0], [0, 9, 0, 0]]))
    metric.update_state(np.array([[2], [0]]), np.array([[0, 0, 9, 0], [0, 9, 0, 0]]))
    # class 0: 1 of 2; class 1: 1 of 2; class 2: 1 of 1; class 3: never seen -> 0
    np.testing.assert_allclose(np.asarray(metric.result()), [0.5, 0.5, 1.0, 0.0])
    metric.reset_state()
    np.testing.assert_allclose(np.asarray(metric.result()), [0, 0, 0, 0])


def test_class_accuracy_config_round_trips():
    metric = ClassAccuracy.from_config(ClassAccuracy(7, name="per_class").get_config())
    assert (metric.n_classes, metric.name) == (7, "per_class")


@pytest.mark.parametrize("algorithm", list(RULES))
def test_history_holds_one_class_accuracy_vector_per_epoch(algorithm):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (64, 28, 28, 1)).astype("uint8")
    y = np.arange(64) % 10
    data = build_dataset("MNIST", (x, y, x[:30], y[:30]), n_classes=10, source="test")
    rule = RULES[algorithm]
    model = compile_model(build_model(ARCHITECTURES["dense"], rule, (28, 28, 1), 10), rule, 0.1)
    result = train(model, data, TrainingConfig(batch_size=16, learning_rate=0.1, epochs=2),
                   verbose=0)
    per_class = result.history["val_class_accuracy"]
    assert len(per_class) == 2 and all(len(epoch) == 10 for epoch in per_class)
    # The test split has 3 examples of classes 0-2 and 3 of every other: the
    # class-weighted mean of the per-class accuracy is the overall accuracy.
    counts = np.bincount(y[:30], minlength=10)
    for epoch, accuracy in zip(per_class, result.history["val_accuracy"], strict=True):
        assert np.dot(epoch, counts) / 30 == pytest.approx(accuracy, abs=1e-6)
    assert isinstance(result.history["val_accuracy"][0], float)


# --- A compiled model, saved and loaded back ------------------------------------------------

N_CLASSES = 4


def small_network() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return inputs, keras.layers.Dense(N_CLASSES)(keras.layers.Flatten()(x))


def compiled_brainprop() -> keras.Model:
    model = BrainProp(*small_network(), batch_size=16, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[ClassAccuracy(N_CLASSES)])
    return model


def compiled_ebp() -> keras.Model:
    model = keras.Model(*small_network())
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", ClassAccuracy(N_CLASSES)])
    return model


def compiled_converted() -> keras.Model:
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(N_CLASSES, activation="softmax")])
    model = to_brainprop(classifier, batch_size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[ClassAccuracy(N_CLASSES)])
    return model


# The models docs/python-api.md compiles.
COMPILED = {"BrainProp": compiled_brainprop, "EBP": compiled_ebp, "converted": compiled_converted}


@pytest.mark.parametrize("kind", COMPILED)
def test_a_compiled_model_saves_and_loads_back_with_its_metrics(kind, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    y = np.arange(64) % N_CLASSES
    keras.utils.set_random_seed(1)
    model = COMPILED[kind]()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "run.keras")

    loaded = keras.models.load_model(tmp_path / "run.keras")

    assert type(loaded) is type(model)
    for got, want in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(want))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_compile_config() == model.get_compile_config()
    evaluated = [m.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
                 for m in (model, loaded)]
    assert evaluated[0].keys() == evaluated[1].keys() and "class_accuracy" in evaluated[1]
    for key, value in evaluated[0].items():
        np.testing.assert_allclose(evaluated[1][key], value, rtol=1e-6)
    assert [metric.n_classes for metric in class_accuracies(loaded)] == [N_CLASSES]


def class_accuracies(model: keras.Model) -> list[ClassAccuracy]:
    """The `ClassAccuracy` metrics among a model's, those Keras holds in a group included."""
    found, metrics = [], list(model.metrics)
    while metrics:
        metric = metrics.pop()
        if isinstance(metric, ClassAccuracy):
            found.append(metric)
        metrics.extend(getattr(metric, "metrics", []))
    return found
