"""What a run prints per epoch, and its CSV log."""

import csv
import io
import json

import pytest

from brainprop.train.console import ChanceHint, CSVLog, EpochLine, default_verbosity, epoch_line

pytestmark = pytest.mark.backend_independent


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_default_verbosity_is_a_bar_on_a_terminal_and_a_line_per_epoch_in_a_file():
    assert default_verbosity(Terminal()) == 1
    assert default_verbosity(io.StringIO()) == 2


def test_epoch_line_is_one_plain_line_without_per_class_lists_or_angles():
    logs = {"val_accuracy": 0.25, "accuracy": 0.5, "loss": 0.125, "val_loss": 0.0625,
            "learning_rate": 0.05, "epoch_seconds": 2.26, "class_accuracy": [0.1, 0.9],
            "val_class_accuracy": [0.2, 0.8], "weight_angle/conv_1": 85.5,
            "update_angle/output": 0.0}
    assert epoch_line(3, 500, logs) == (
        "Epoch 3/500 - 2.3s - loss: 0.1250 - accuracy: 0.5000 - val_loss: 0.0625 - "
        "val_accuracy: 0.2500 - learning_rate: 0.05"
    )


def test_epoch_line_callback_prints_epochs_from_one():
    stream = io.StringIO()
    callback = EpochLine(stream)
    callback.set_params({"epochs": 2})
    for epoch in range(2):
        callback.on_epoch_end(epoch, {"loss": 1.0})
    assert stream.getvalue() == "Epoch 1/2 - loss: 1.0000\nEpoch 2/2 - loss: 1.0000\n"


def run_hint(accuracies, n_classes=10):
    stream = io.StringIO()
    hint = ChanceHint(n_classes, stream=stream)
    printed = []
    for epoch, accuracy in enumerate(accuracies):
        hint.on_epoch_begin(epoch)
        hint.on_epoch_end(epoch, {"val_accuracy": accuracy})
        printed.append(stream.getvalue())  # what the epoch's end left printed
    hint.on_train_end()
    return printed, stream.getvalue()


def test_chance_hint_is_said_once_before_the_next_epoch():
    printed, text = run_hint([0.11, 0.10, 0.12])
    assert printed[0] == ""  # not before Keras' progress bar ends epoch 1's line
    assert printed[1] == printed[2] == text and text.count("\n") == 1
    assert "0.110 is at chance (1/10 = 0.100) after epoch 1" in text
    assert "What learning looks like" in text


def test_chance_hint_is_silent_above_chance_and_after_the_first_epochs():
    assert run_hint([0.5, 0.6, 0.7])[1] == ""
    assert run_hint([0.5, 0.6, 0.7, 0.1])[1] == ""  # a late collapse is another matter
    assert "1/100" in run_hint([0.011], n_classes=100)[1]


@pytest.mark.parametrize("accuracy, n_classes, said", [
    (0.100, 10, True), (0.110, 10, True), (0.130, 10, False),
    (0.340, 3, True), (0.383, 3, False),
    (0.025, 100, True), (0.040, 100, False),
])
def test_chance_hint_is_said_within_two_percent_of_the_way_from_chance_to_perfect(
        accuracy, n_classes, said):
    assert bool(run_hint([accuracy], n_classes=n_classes)[1]) == said


def test_csv_log_counts_epochs_from_one_and_writes_lists_as_json(tmp_path):
    path = tmp_path / "log.csv"
    log = CSVLog(str(path))
    log.on_train_begin()
    for epoch in range(2):
        log.on_epoch_end(epoch, {"loss": 0.5, "class_accuracy": [0.25, 1.0, 0.0]})
    log.on_train_end()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert [json.loads(row["class_accuracy"]) for row in rows] == [[0.25, 1.0, 0.0]] * 2
    assert float(rows[0]["loss"]) == 0.5


def test_tensorboard_gets_every_epoch_number_each_class_and_the_learning_rate(tmp_path):
    import numpy as np
    import pytest

    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from brainprop.data.datasets import build_dataset
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model
    from brainprop.train.training import TrainingConfig, TrainingFiles, train

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (64, 28, 28, 1)).astype("uint8")
    y = np.arange(64) % 10
    data = build_dataset("MNIST", (x, y, x[:30], y[:30]), n_classes=10, source="test")
    rule = RULES["BrainProp"]
    model = compile_model(build_model(ARCHITECTURES["dense"], rule, (28, 28, 1), 10), rule, 0.1)
    result = train(model, data, TrainingConfig(batch_size=16, learning_rate=0.1, epochs=2),
                   TrainingFiles(tensorboard_dir=tmp_path), verbose=0)

    def scalars(split):
        events = event_accumulator.EventAccumulator(str(tmp_path / split),
                                                    size_guidance={"tensors": 0})
        events.Reload()
        return {tag: [(e.step, float(np.asarray(
                    __import__("tensorflow").make_ndarray(e.tensor_proto))))
                      for e in events.Tensors(tag)]
                for tag in events.Tags()["tensors"]}

    train_scalars, val_scalars = scalars("train"), scalars("validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_epoch_seconds",
            *(f"epoch_class_accuracy/{k}" for k in range(10))} <= set(train_scalars)
    assert [step for step, _ in train_scalars["epoch_loss"]] == [1, 2]
    assert [v for _, v in train_scalars["epoch_learning_rate"]] == pytest.approx([0.1, 0.1])
    assert [v for _, v in val_scalars["epoch_accuracy"]] == pytest.approx(
        result.history["val_accuracy"], abs=1e-6)
    assert [v for _, v in val_scalars["epoch_class_accuracy/3"]] == pytest.approx(
        [epoch[3] for epoch in result.history["val_class_accuracy"]], abs=1e-6)
