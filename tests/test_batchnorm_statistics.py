"""BatchNormalization's moving statistics, which evaluation uses: the release's momentum on
the paper's data sets, a momentum in step with the epoch elsewhere, so that validation
reflects the trained network from the first epoch however small the data set.

The slow tests train on small real sets written in their real formats from the full
Fashion-MNIST (`benchmarks/small_real_sets.py`, which measures them; the Debian package
`dataset-fashion-mnist`, which `.ci/run` unpacks): the folder holding its four gzipped idx
files is `BRAINPROP_TEST_FASHION_MNIST`.
"""

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from brainprop.runs.cli import main
from brainprop.runs.plan import plan_run
from brainprop.runs.runconfig import RunConfig
from brainprop.train.training import set_batchnorm_momentum
from brainprop.train.trainingconfig import TrainingConfig, epoch_momentum

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from small_real_sets import (  # noqa: E402
    FILES,
    read_fashion_mnist,
    write_idx_subset,
    write_photo_folder,
)

# --- the momentum ---------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_epoch_statistics_leave_a_thousandth_of_the_start_after_an_epoch():
    for steps in (1, 13, 16, 32, 100, 469, 687):
        assert epoch_momentum(steps) ** steps == pytest.approx(0.001)
    assert epoch_momentum(32) == pytest.approx(0.806, abs=1e-3)


@pytest.mark.backend_independent
def test_a_long_epoch_keeps_the_releases_momentum():
    # 88,064 images in batches of 128 (688 steps), 60,000 in batches of 32 (1,875 steps).
    assert epoch_momentum(688) == epoch_momentum(1875) == 0.99


@pytest.mark.backend_independent
def test_the_release_statistics_leave_the_layers_untouched():
    assert TrainingConfig(128, 0.1).batchnorm_momentum(16) is None
    assert TrainingConfig(128, 0.1, batchnorm_statistics="epoch").batchnorm_momentum(16) == (
        epoch_momentum(16))
    with pytest.raises(ValueError, match="batchnorm_statistics"):
        TrainingConfig(128, 0.1, batchnorm_statistics="precise")


@pytest.mark.backend_independent
@pytest.mark.parametrize("dataset,expected", [
    ("MNIST", "release"), ("CIFAR10", "release"), ("CIFAR100", "release"),
    ("FashionMNIST", "epoch"),
])
def test_the_default_is_the_releases_on_the_papers_data_sets_only(dataset, expected):
    architecture = "deep" if dataset.startswith("CIFAR") else "conv"
    config = RunConfig(dataset, architecture, "EBP")
    hyper = plan_run(config).hyperparameters
    assert hyper.training.batchnorm_statistics == expected
    assert hyper.as_dict()["batchnorm_statistics"] == expected
    other = "release" if expected == "epoch" else "epoch"
    chosen = RunConfig(dataset, architecture, "EBP", batchnorm_statistics=other)
    assert plan_run(chosen).hyperparameters.training.batchnorm_statistics == other
    assert ["--batchnorm-statistics", other] == chosen.argv()[-2:]


@pytest.mark.backend_independent
def test_a_resume_compares_the_statistics_and_the_release_line_is_unchanged():
    epoch = plan_run(RunConfig("FashionMNIST", "conv", "EBP")).hyperparameters
    release = plan_run(RunConfig("FashionMNIST", "conv", "EBP",
                                 batchnorm_statistics="release")).hyperparameters
    assert epoch.settings()["batchnorm_statistics"] == "epoch"
    assert epoch.line().endswith(", batchnorm statistics epoch")
    # What runs recorded before the choice existed: they resume as they trained.
    assert "batchnorm_statistics" not in release.settings()
    assert "batchnorm" not in release.line()


def _batchnorm_model():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2)(inner(keras.layers.BatchNormalization()(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_every_batchnorm_layer_takes_the_momentum_nested_ones_included():
    model = _batchnorm_model()
    set_batchnorm_momentum(model, 0.5)
    layers = [model.layers[1], model.layers[2].layers[0]]
    assert [layer.momentum for layer in layers] == [0.5, 0.5]


def test_a_model_that_has_trained_moves_its_statistics_by_the_new_momentum():
    model = _batchnorm_model()
    x = np.random.default_rng(0).normal(5.0, 1.0, (8, 3)).astype("float32")
    y = np.zeros((8, 2), "float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # its step made, momentum 0.99
    set_batchnorm_momentum(model, 0.0)  # the moving mean becomes the batch's
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[1].moving_mean),
                               x.mean(axis=0), rtol=1e-5)


# --- small real data sets -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_mnist():
    """The full Fashion-MNIST, read from its four gzipped idx files."""
    folder = os.environ.get("BRAINPROP_TEST_FASHION_MNIST")
    missing = ("BRAINPROP_TEST_FASHION_MNIST is not set" if not folder else next(
        (f"{Path(folder) / name} is missing" for name in FILES.values()
         if not (Path(folder) / name).is_file()), None))
    if missing is not None:
        reason = (f"Fashion-MNIST's idx files are needed: {missing} (the Debian package "
                  "dataset-fashion-mnist holds them; .ci/run unpacks it)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return read_fashion_mnist(Path(folder))


def _history(out: Path, summary: dict) -> dict:
    return json.loads((out / summary["files"]["history_json"]).read_text())["history"]


@pytest.mark.slow
def test_4000_fashion_mnist_images_validate_above_60_percent_after_2_epochs(
        fashion_mnist, tmp_path):
    data = write_idx_subset(fashion_mnist, tmp_path / "data", train=4000, test=1000)
    out = tmp_path / "out"
    assert main(["FashionMNIST", "conv", "EBP", "--data-dir", str(data),
                 "--epochs", "2", "-s", "--output-dir", str(out), "--verbose", "0"]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["hyperparameters"]["batchnorm_statistics"] == "epoch"
    history = _history(out, summary)
    assert history["val_accuracy"][-1] >= 0.6, history


@pytest.mark.slow
def test_a_folder_of_2000_photos_validates_as_it_trains_from_the_first_epoch(
        fashion_mnist, tmp_path, capsys):
    folder = write_photo_folder(fashion_mnist, tmp_path / "photos", train=200, test=40)
    out = tmp_path / "out"
    assert main([str(folder), "conv", "EBP", "--epochs", "3", "-s", "--output-dir", str(out),
                 "--verbose", "0"]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    history = _history(out, summary)
    validation, training = history["val_accuracy"], history["accuracy"]
    assert validation[-1] >= 0.22, history
    # Never behind training by more than 0.1 (the epoch's training accuracy is an average
    # over an epoch of learning, with dropout: validation of its end may lie above it).
    assert all(v >= t - 0.1 for v, t in zip(validation, training, strict=True)), history

    # The saved weights hold the statistics the best epoch was validated with.
    capsys.readouterr()
    weights = out / summary["files"]["weights"]
    assert main([str(folder), "conv", "EBP", "-l", str(weights)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {summary['best_val_accuracy']:.4f}"
