"""Recovering the class order of a Tiny ImageNet weight file."""

import json
import re

import h5py
import numpy as np
import pytest
from tinyimagenet_files import write_tiny_imagenet

from brainprop.runs import classorder
from brainprop.runs.classorder import confusion_matrix, first_per_class, recover_order
from brainprop.runs.cli import main

CLASSES = ["n01", "n02", "n03", "n04", "n05"]


@pytest.mark.backend_independent
def test_assignment_recovers_a_permutation_greedy_choice_would_miss():
    # Unit 0 chooses n02 most often, but n02 belongs to unit 1, which chooses
    # nothing else; the best assignment gives unit 0 its second choice, n01.
    counts = np.array(
        [
            [40, 45, 0, 5],
            [0, 90, 0, 0],
            [0, 0, 10, 80],
            [5, 0, 70, 5],
        ]
    )
    result = recover_order(counts, CLASSES[:4])
    assert result.classes == ["n01", "n02", "n04", "n03"]
    assert result.agreement == pytest.approx((40 + 90 + 80 + 70) / counts.sum())
    assert result.sorted_agreement == pytest.approx(np.trace(counts) / counts.sum())
    assert result.images == counts.sum() and result.clear_units == 3


@pytest.mark.backend_independent
def test_confusion_matrix_counts_unit_against_label():
    units = np.array([2, 2, 0, 1, 2])
    labels = np.array([0, 0, 1, 1, 2])
    counts = confusion_matrix(units, labels, 3)
    assert counts.tolist() == [[0, 1, 0], [0, 1, 0], [2, 0, 1]]


@pytest.mark.backend_independent
def test_noisy_predictions_of_a_permuted_network_give_the_permutation_back():
    rng = np.random.default_rng(0)
    true_order = list(rng.permutation(CLASSES))
    labels = np.repeat(np.arange(5), 50)  # sorted positions
    units = np.array([true_order.index(CLASSES[label]) for label in labels])
    wrong = rng.random(len(units)) < 0.6  # 60% wrong, spread over all units
    units[wrong] = rng.integers(0, 5, wrong.sum())
    assert recover_order(confusion_matrix(units, labels, 5), CLASSES).classes == true_order


@pytest.mark.backend_independent
def test_first_images_of_each_class():
    labels = np.array([0, 0, 0, 1, 2, 2, 1, 1])
    assert first_per_class(labels, 2).tolist() == [0, 1, 3, 4, 5, 6]


def one_line_error(argv, capsys) -> str:
    assert classorder.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("classorder: error: ")
    return error


@pytest.mark.backend_independent
def test_missing_weights_and_existing_output_are_refused(tmp_path, capsys):
    assert "does not exist" in one_line_error([str(tmp_path / "none.h5")], capsys)
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w"):
        pass
    existing = tmp_path / "w.h5.classes.txt"
    existing.write_text("keep me\n")
    assert classorder.default_output(weights) == existing
    message = one_line_error([str(weights)], capsys)
    assert "never overwritten" in message and existing.read_text() == "keep me\n"


def accuracy_of(argv, capsys) -> float:
    assert main(argv) == 0
    return float(re.findall(r"Test accuracy: ([0-9.]+)", capsys.readouterr().out)[-1])


@pytest.mark.slow
def test_order_of_a_network_trained_on_permuted_classes_is_recovered_exactly(tmp_path, capsys):
    wnids = ("n04", "n02", "n05", "n01", "n03")
    write_tiny_imagenet(
        tmp_path, n_train=(12,) * 5, n_val=(4,) * 5, size=16, wnids=wnids, by_class=True
    )
    trained_order = ["n03", "n05", "n01", "n02", "n04"]  # no wnid at its sorted place
    (tmp_path / "order.txt").write_text("".join(f"{w}\n" for w in trained_order))
    data = ["--data-dir", str(tmp_path)]
    out = tmp_path / "out"
    # Settings under which the deep network learns 60 images in seconds.
    assert main(["TinyImageNet", "deep", "EBP", "-s", "--epochs", "20", "--batch-size", "6",
                 "--learning-rate", "0.01", "--init-std", "0.1", "--output-dir", str(out),
                 "--class-order", str(tmp_path / "order.txt"), *data]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["class_order"] == str(tmp_path / "order.txt")
    assert summary["classes"] == trained_order and summary["hyperparameters"]["init_std"] == 0.1
    weights = str(out / summary["files"]["weights"])
    capsys.readouterr()

    recovered = tmp_path / "recovered.txt"
    assert classorder.main([weights, "--output", str(recovered), *data]) == 0
    assert recovered.read_text().split("\n") == [*trained_order, ""]
    report = capsys.readouterr().out
    agreement = float(re.search(r"Agreement ([0-9.]+) on 60 training images", report)[1])
    assert agreement > 0.8

    # The true order's test accuracy was measured in training, on the same weights.
    with_true_order = round(summary["best_val_accuracy"], 4)
    evaluate = ["TinyImageNet", "deep", "EBP", "-l", weights, *data]
    with_recovered = accuracy_of([*evaluate, "--class-order", str(recovered)], capsys)
    assert with_recovered == with_true_order > 0.6
    assert accuracy_of(evaluate, capsys) < 0.4  # the sorted order: every unit wrong
