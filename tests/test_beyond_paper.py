"""Beyond the paper's ten rows, end to end: FashionMNIST and a folder of one's own images
train, save, evaluate with -l, resume, reach TensorBoard and the report; the paper's data
sets on other networks only with --beyond-paper; networks refused where images do not fit."""

import gzip
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from data_files import idx_bytes
from PIL import Image
from test_own import pattern, write_npz
from test_resume import send_signal_at

from brainprop.data.standard import MNIST_IDX_FILES
from brainprop.runs.cli import main
from brainprop.tables import report


def write_fashion_idx(data_dir: Path, n_train=384, n_test=96) -> Path:
    """fashion-mnist/ with the four gzipped idx files, of learnable 28x28 images."""
    rng = np.random.default_rng(4)
    folder = data_dir / "fashion-mnist"
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 90, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 5 + 2 * label, 4:24] = 230
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
    for key, name in MNIST_IDX_FILES.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arrays[key])))
    return data_dir


def write_learnable_folder(root: Path, n_train=60, n_test=16) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png: three classes of 12x10 images."""
    seed = 0
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(("circle", "line", "square")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                seed += 1
                Image.fromarray(pattern(label, seed)).save(folder / f"{i:03d}.png")
    return root


def summary_of(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}_summary.json").read_text())


def one_error(capsys) -> str:
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("main.py: error:"), errors
    return errors[0]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return write_fashion_idx(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_learnable_folder(tmp_path_factory.mktemp("own") / "shapes")


def train_save_load_resume_report(dataset_args, stem, out, tensorboard, monkeypatch, capsys):
    """Train with -s (stopped after its first epoch, then resumed), evaluate the weights
    with -l, report the folder: what each step left."""
    argv = [*dataset_args, "conv", "BrainProp", "-s", "--output-dir", str(out),
            "--epochs", "2", "--batch-size", "16", "--verbose", "0",
            "--tensorboard", str(tensorboard)]
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 0)
        assert main(argv) == 130
    assert "--resume" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main([*argv, "--resume"]) == 0
    summary = summary_of(out, stem)
    assert summary["resumed"] and summary["epochs_run"] == 2
    assert summary["paper_combination"] is False
    assert list((tensorboard / stem / "train").glob("events.out.tfevents.*"))
    capsys.readouterr()
    weights = out / summary["files"]["weights"]
    assert main([*dataset_args, "conv", "BrainProp", "-l", str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "Test accuracy:" in printed
    assert report.main([str(out)]) == 0
    tables = (out / "report" / "tables.md").read_text()
    assert report.BEYOND_TITLE in tables
    return summary, tables


@pytest.mark.slow
def test_fashion_mnist_from_its_files_end_to_end(fashion, tmp_path, monkeypatch, capsys):
    summary, tables = train_save_load_resume_report(
        ["FashionMNIST", "--data-dir", str(fashion)], "FashionMNIST_conv_BrainProp_seed1",
        tmp_path / "out", tmp_path / "tb", monkeypatch, capsys)
    assert (summary["dataset"], summary["n_classes"], summary["train_images"]) == (
        "FashionMNIST", 10, 384)
    [row] = [line for line in tables.splitlines() if line.startswith("| FashionMNIST")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["FashionMNIST", "conv", "BrainProp"]
    assert cells[5] == cells[6] == cells[9] == cells[10] == ""  # no paper figures, no diff


@pytest.mark.slow
def test_an_image_folder_end_to_end(folder, tmp_path, monkeypatch, capsys):
    summary, tables = train_save_load_resume_report(
        [str(folder)], "shapes_conv_BrainProp_seed1", tmp_path / "out", tmp_path / "tb",
        monkeypatch, capsys)
    assert summary["dataset"] == "shapes" and summary["classes"] == ["circle", "line", "square"]
    assert summary["class_order"] == "sorted" and summary["config"]["dataset"] == str(folder)
    assert summary["best_val_accuracy"] > 0.5  # chance: 1/3
    assert (folder / "brainprop-cache.npz").is_file()
    assert "| shapes | conv | BrainProp |" in tables


@pytest.mark.slow
def test_every_network_that_fits_trains_on_own_data(tmp_path):
    write_npz(tmp_path / "tiny.npz")  # 9x11 colour images, five classes
    for architecture in ("dense", "conv", "loccon", "deep"):
        assert main([str(tmp_path / "tiny.npz"), architecture, "EBP", "--epochs", "1",
                     "--batch-size", "4", "--verbose", "0"]) == 0


@pytest.mark.slow
def test_seeds_of_own_data_run_one_after_another_each_with_its_summary(tmp_path, capsys):
    write_npz(tmp_path / "tiny.npz")
    out = tmp_path / "out"
    assert main([str(tmp_path / "tiny.npz"), "dense", "BrainProp", "-s", "--seeds", "1-2",
                 "--epochs", "1", "--batch-size", "4", "--verbose", "0",
                 "--output-dir", str(out)]) == 0
    assert "Over 2 seeds" in capsys.readouterr().out
    assert [summary_of(out, f"tiny_dense_BrainProp_seed{seed}")["seed"] for seed in (1, 2)] == [1, 2]


def test_print_config_of_a_path_names_the_path(tmp_path, capsys):
    write_npz(tmp_path / "tiny.npz")
    assert main([str(tmp_path / "tiny.npz"), "loccon", "EBP", "-s", "--print-config",
                 "--output-dir", str(tmp_path)]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["dataset"] == "tiny" and described["data"] == str(tmp_path / "tiny.npz")
    assert described["paper_combination"] is False
    assert described["runs"][0]["files"]["summary"].endswith("tiny_loccon_EBP_seed1_summary.json")


def test_a_network_the_images_do_not_fit_is_refused_before_anything_is_written(tmp_path, capsys):
    x = np.zeros((6, 7, 7), np.uint8)
    write_npz(tmp_path / "small.npz", x_train=x, x_test=x[:3], y_train=[0, 1] * 3, y_test=[1, 0, 1])
    out = tmp_path / "out"
    assert main([str(tmp_path / "small.npz"), "deep", "BrainProp", "-s",
                 "--output-dir", str(out)]) == 2
    assert "deep does not fit 7x7 images" in one_error(capsys)
    assert not out.exists() or not list(out.iterdir())


def test_the_papers_data_sets_take_other_networks_only_with_beyond_paper(tmp_path, capsys):
    assert main(["MNIST", "deep", "BrainProp", "--print-config"]) == 2
    message = one_error(capsys)
    assert "not a combination of the paper" in message and "--beyond-paper" in message
    assert main(["MNIST", "deep", "BrainProp", "--beyond-paper", "--print-config"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["paper_combination"] is False
    assert main(["MNIST", "conv", "BrainProp", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["paper_combination"] is True


def test_the_report_never_compares_runs_beyond_the_paper_with_it(tmp_path):
    def write(stem, dataset, architecture, paper_combination):
        summary = {"dataset": dataset, "architecture": architecture, "algorithm": "EBP",
                   "seed": 1, "best_epoch": 3, "epochs_run": 5, "best_val_accuracy": 0.5,
                   "files": {}}
        if paper_combination is not None:
            summary["paper_combination"] = paper_combination
        (tmp_path / f"{stem}_summary.json").write_text(json.dumps(summary))

    write("MNIST_dense_EBP_seed1", "MNIST", "dense", True)
    write("MNIST_conv_EBP_seed1", "MNIST", "conv", None)  # written before the flag existed
    write("MNIST_deep_EBP_seed1", "MNIST", "deep", False)
    write("pets_conv_EBP_seed1", "pets", "conv", False)
    rows = {(row.dataset, row.architecture): row for row in report.table_rows(
        report.load_runs(tmp_path))}
    assert rows["MNIST", "dense"].table == rows["MNIST", "conv"].table == "table1"
    assert rows["MNIST", "dense"].paper is not None
    assert rows["MNIST", "deep"].table == rows["pets", "conv"].table == report.BEYOND
    assert rows["MNIST", "deep"].paper is None and rows["pets", "conv"].paper is None
