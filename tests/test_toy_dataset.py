"""A data set is one declaration: declared here, and nowhere else, a toy data set reaches
the command line's choices, its --help, a real training run and the run's summary."""

import json
from pathlib import Path

import numpy as np
import pytest

from brainprop.data.checks import Read
from brainprop.data.datasets import DATASETS, DatasetSpec, register_dataset
from brainprop.runs.cli import build_parser, main

pytestmark = pytest.mark.backend_independent

TOY = "Toy3"
TOY_FILE = "toy3.npz"


def toy_arrays(n_train: int = 960, n_test: int = 96, seed: int = 0) -> tuple:
    """8x8 grayscale images of three classes, class k a bright band in rows 2k to 2k+2."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 3, n)
        images = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 3] = 240
        return images, labels

    return (*split(n_train), *split(n_test))


def read_toy(folder: Path, class_order) -> Read:
    with np.load(folder / TOY_FILE) as npz:
        return Read(tuple(npz[key] for key in ("x_train", "y_train", "x_test", "y_test")))


@pytest.fixture
def toy():
    """The toy data set, declared for one test (and withdrawn after it); what it downloaded."""
    downloads = []

    def download():
        downloads.append(TOY)
        return toy_arrays()

    register_dataset(DatasetSpec(TOY, TOY_FILE, read_toy, n_classes=3, download=download))
    yield downloads
    del DATASETS[TOY]


def test_a_declared_data_set_is_a_choice_with_its_files_in_the_help(toy, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{{MNIST,CIFAR10,CIFAR100,TinyImageNet,FashionMNIST,{TOY},PATH}}" in text
    assert f"{TOY}: {TOY_FILE}" in text  # --data-dir names what to put there


def test_an_undeclared_data_set_is_refused(capsys):
    assert TOY not in DATASETS
    with pytest.raises(SystemExit):
        build_parser().parse_args([TOY, "dense", "BrainProp"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_declared_data_set_downloads_trains_and_is_summarised(toy, tmp_path):
    out = tmp_path / "out"
    argv = [TOY, "conv", "BrainProp", "-s", "--epochs", "2", "--batch-size", "16",
            "--output-dir", str(out), "--verbose", "0"]
    assert main(argv) == 0
    assert toy == [TOY]  # downloaded once
    summary = json.loads((out / f"{TOY}_conv_BrainProp_seed1_summary.json").read_text())
    assert (summary["dataset"], summary["n_classes"]) == (TOY, 3)
    assert (summary["train_images"], summary["test_images"]) == (960, 96)
    assert summary["epochs_run"] == 2 and summary["best_val_accuracy"] > 0.5  # chance: 1/3
    assert summary["paper_combination"] is False  # the paper never saw it
    assert all((out / name).is_file() for name in summary["files"].values())


def test_a_declared_data_set_reads_its_files_offline(toy, tmp_path):
    x_train, y_train, x_test, y_test = toy_arrays(n_train=48, n_test=16, seed=1)
    np.savez(tmp_path / TOY_FILE, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    out = tmp_path / "out"
    argv = [TOY, "dense", "EBP", "-s", "--epochs", "1", "--batch-size", "16",
            "--data-dir", str(tmp_path), "--output-dir", str(out), "--verbose", "0"]
    assert main(argv) == 0
    assert toy == []  # nothing downloaded
    summary = json.loads((out / f"{TOY}_dense_EBP_seed1_summary.json").read_text())
    assert (summary["train_images"], summary["test_images"]) == (48, 16)
