"""Per-class accuracy: exact counts, and one vector per epoch in the training history."""

import numpy as np
import pytest

from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model, compile_model
from brainprop.data.datasets import build_dataset
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
    for epoch, accuracy in zip(per_class, result.history["val_accuracy"]):
        assert np.dot(epoch, counts) / 30 == pytest.approx(accuracy, abs=1e-6)
    assert isinstance(result.history["val_accuracy"][0], float)
