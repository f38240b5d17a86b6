"""The command line end to end, on data the test writes in the real formats."""

import contextlib
import csv
import io
import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from brainprop.data.datasets import paper_combinations
from brainprop.model.rules import RULES
from brainprop.runs.cli import main, parse_seeds

ROOT = Path(__file__).resolve().parents[1]


def write_learnable_mnist(directory: Path, n_train=1200, n_test=400, seed=0) -> Path:
    """mnist.npz where class k lights up row block k: learnable, not trivial."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 10, n).astype("uint8")
        images = rng.integers(0, 90, (n, 28, 28)).astype("uint8")
        for i, label in enumerate(labels):
            row = 2 + 2 * label + rng.integers(0, 2)
            images[i, row : row + 3, 4:24] = 230
        return images, labels

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short BrainProp run with -s, shared by the tests below."""
    base = tmp_path_factory.mktemp("run")
    data = write_learnable_mnist(base / "data")
    out = base / "out"
    argv = ["MNIST", "conv", "BrainProp", "-s", "--data-dir", str(data),
            "--output-dir", str(out), "--epochs", "4", "--batch-size", "32",
            "--tensorboard", str(base / "tensorboard")]
    assert main(argv) == 0
    summary_path = next(out.glob("*_summary.json"))
    return argv, out, json.loads(summary_path.read_text())


def test_save_writes_plot_history_weights_and_summary(trained):
    _, out, summary = trained
    files = {k: out / name for k, name in summary["files"].items()}
    assert set(files) >= {"plot_pdf", "plot_png", "history", "history_json", "weights",
                          "summary", "log"}
    assert all(path.exists() for path in files.values())
    assert files["plot_pdf"].read_bytes().startswith(b"%PDF")
    with Image.open(files["plot_png"]) as image:
        assert image.format == "PNG" and image.size[0] > 300
    with open(files["history"], "rb") as f:
        dataset, algorithm, history = pickle.load(f)
    assert (dataset, algorithm) == ("MNIST", "BrainProp")
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert len(history["val_accuracy"]) == summary["epochs_run"] == len(summary["epoch_seconds"])
    # The JSON beside it holds the same numbers, and no code can hide in it.
    assert json.loads(files["history_json"].read_text()) == {
        "dataset": "MNIST", "algorithm": "BrainProp", "history": history}
    assert not list(out.glob(".*partial*"))


def test_tensorboard_gets_a_folder_per_run(trained):
    _, out, summary = trained
    run = out.parent / "tensorboard" / summary["files"]["summary"].removesuffix("_summary.json")
    assert list((run / "train").glob("events.out.tfevents.*"))
    assert list((run / "validation").glob("events.out.tfevents.*"))


def test_epoch_seconds_are_logged_per_epoch_and_kept_out_of_the_history(trained):
    _, out, summary = trained
    with open(out / summary["files"]["log"], newline="") as f:
        logged = [float(row["epoch_seconds"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(logged, summary["epoch_seconds"], atol=1e-4)
    assert all(s > 0 for s in summary["epoch_seconds"])
    with open(out / summary["files"]["history"], "rb") as f:
        assert "epoch_seconds" not in pickle.load(f)[2]


def test_csv_log_counts_epochs_as_printed_and_holds_per_class_accuracy_as_json(trained):
    _, out, summary = trained
    with open(out / summary["files"]["log"], newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out / summary["files"]["history"], "rb") as f:
        history = pickle.load(f)[2]
    assert [int(row["epoch"]) for row in rows] == list(range(1, summary["epochs_run"] + 1))
    logged = [json.loads(row["val_class_accuracy"]) for row in rows]
    np.testing.assert_allclose(logged, history["val_class_accuracy"], rtol=1e-6)


def test_summary_records_run_and_best_epoch(trained):
    _, out, summary = trained
    with open(out / summary["files"]["history"], "rb") as f:
        history = pickle.load(f)[2]
    val = history["val_accuracy"]
    assert summary["best_epoch"] == int(np.argmax(val)) + 1
    assert summary["best_val_accuracy"] == pytest.approx(max(val))
    conv, batchnorm = 3 * 3 * 32, 4 * 32
    assert summary["total_params"] == conv + batchnorm + conv * 32 + batchnorm + 6272 * 500 + 5000
    assert summary["hyperparameters"]["batch_size"] == 32
    assert summary["hyperparameters"]["learning_rate"] == 0.1
    assert (summary["dataset"], summary["architecture"], summary["seed"]) == ("MNIST", "conv", 1)
    assert summary["backend"] == keras.backend.backend()


def test_paper_dense_setting_is_recorded_in_the_summary(tmp_path):
    data = write_learnable_mnist(tmp_path / "data", n_train=300, n_test=100)
    out = tmp_path / "out"
    assert main(["MNIST", "dense", "BrainProp", "-s", "--learning-rate", "1", "--init-std",
                 "0.1", "--epochs", "1", "--data-dir", str(data), "--output-dir", str(out)]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["hyperparameters"]["init_std"] == 0.1
    assert summary["hyperparameters"]["learning_rate"] == 1.0
    assert summary["class_order"] is None and summary["classes"] is None  # MNIST: digits


def test_brainprop_learns_the_synthetic_task_well_above_chance(trained):
    assert trained[2]["best_val_accuracy"] > 0.8  # chance is 0.1


def test_loading_saved_weights_reproduces_best_validation_accuracy(trained, capsys):
    argv, out, summary = trained
    weights = out / summary["files"]["weights"]
    assert main(argv[:3] + ["-l", str(weights), *argv[4:6]]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {summary['best_val_accuracy']:.4f}"


def test_second_save_run_gets_a_new_name_and_keeps_the_first(trained):
    argv, out, summary = trained
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*argv[:-4], "--epochs", "1", "--batch-size", "64"]) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert all(after[name] == data for name, data in before.items())
    new = set(after) - set(before)
    assert any(name.endswith("_2_summary.json") for name in new)
    assert len(new) == len(summary["files"])


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )


def assert_one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


INVALID = [
    (d, a, alg)
    for d, a, alg in itertools.product(paper_combinations(), ["dense", "loccon", "conv", "deep"], list(RULES))
    if a not in paper_combinations()[d]
]


@pytest.mark.backend_independent
def test_every_invalid_combination_is_refused_in_one_line(tmp_path, capsys):
    # In-process for speed; one of them also as a real process below.
    for dataset, architecture, algorithm in INVALID:
        assert main([dataset, architecture, algorithm, "--data-dir", str(tmp_path)]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and "not a combination of the paper" in errors[0]


@pytest.mark.backend_independent
def test_invalid_combination_process_prints_allowed_ones_without_traceback(tmp_path):
    line = assert_one_line_error(run_cli("MNIST", "deep", "BrainProp", cwd=tmp_path))
    assert "MNIST: dense, loccon, conv" in line and "TinyImageNet: deep" in line
    assert not list(tmp_path.iterdir())


def parser_error(argv, capsys) -> str:
    """The one line on stderr with which the parser refuses `argv` (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "args",
    [["IMAGENET", "deep", "BrainProp"], ["MNIST", "dense", "Hebb"], ["MNIST", "dense"],
     ["MNIST", "dense", "EBP", "--epochs", "0"], ["MNIST", "dense", "EBP", "--batch-size", "x"],
     ["MNIST", "dense", "EBP", "--learning-rate", "-1"], ["MNIST", "dense", "EBP", "--frobnicate"]],
    ids=["dataset", "algorithm", "missing", "epochs", "batch", "lr", "option"],
)
def test_bad_arguments_are_refused_in_one_line(args, capsys):
    assert "error" in parser_error(args, capsys)


@pytest.mark.backend_independent
def test_missing_data_file_says_which_file_to_put_where(tmp_path):
    line = assert_one_line_error(
        run_cli("MNIST", "dense", "EBP", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    )
    assert "mnist.npz" in line


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "text, seeds",
    [("7", [7]), ("1-10", list(range(1, 11))), ("1,3,5", [1, 3, 5]), ("1-3, 8", [1, 2, 3, 8])],
)
def test_seeds_accept_ranges_lists_and_single_numbers(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "args",
    [["--seeds", "1-x"], ["--seeds", "3-1"], ["--seeds", "1,1"], ["--seed", "2", "--seeds", "1-3"],
     ["--validation-split", "1"], ["--validation-split", "0"]],
    ids=["not-a-number", "empty-range", "repeated", "both", "split-1", "split-0"],
)
def test_bad_seeds_and_splits_are_refused_in_one_line(args, capsys):
    assert "error" in parser_error(["MNIST", "dense", "EBP", *args], capsys)


@pytest.mark.backend_independent
def test_load_refuses_seeds_in_one_line(tmp_path, capsys):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"")
    assert main(["MNIST", "dense", "EBP", "-l", str(weights), "--seeds", "1-2"]) == 2
    assert "drop --seeds" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """`--seeds 1-2` in one process, and seed 2 alone in another folder, both holding
    out a quarter of the training set for validation."""
    base = tmp_path_factory.mktemp("seeds")
    data = write_learnable_mnist(base / "data", n_train=300, n_test=100)
    common = ["MNIST", "dense", "EBP", "-s", "--data-dir", str(data), "--epochs", "3",
              "--batch-size", "64", "--validation-split", "0.25"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*common, "--seeds", "1-2", "--output-dir", str(base / "both")]) == 0
    (base / "both.out").write_text(printed.getvalue())
    assert main([*common, "--seed", "2", "--output-dir", str(base / "alone")]) == 0
    return base


def _history(folder: Path, seed: int) -> dict:
    with open(folder / f"MNIST_dense_EBP_seed{seed}_history.pkl", "rb") as f:
        return pickle.load(f)[2]


def test_seeds_run_one_after_another_each_with_its_own_summary(two_seeds):
    summaries = sorted((two_seeds / "both").glob("*_summary.json"))
    assert [p.name for p in summaries] == [
        "MNIST_dense_EBP_seed1_summary.json", "MNIST_dense_EBP_seed2_summary.json"
    ]
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [1, 2]
    assert _history(two_seeds / "both", 1) != _history(two_seeds / "both", 2)


def test_seeds_end_with_mean_and_std_of_best_accuracy_and_best_epoch(two_seeds):
    summaries = [json.loads(p.read_text()) for p in sorted((two_seeds / "both").glob("*_summary.json"))]
    accuracy = [s["best_val_accuracy"] for s in summaries]
    epoch = [s["best_epoch"] for s in summaries]
    last = (two_seeds / "both.out").read_text().strip().splitlines()[-1]
    assert last == (
        f"Over 2 seeds: best validation accuracy {np.mean(accuracy):.4f} "
        f"({np.std(accuracy, ddof=1):.4f}), best epoch {np.mean(epoch):.1f} "
        f"({np.std(epoch, ddof=1):.1f}), mean (std)"
    )


@pytest.mark.backend_independent
def test_seed_and_seeds_exclude_each_other_whatever_the_values(capsys):
    for seed in ("1", "2"):  # 1 is --seed's default: argparse used to let it through
        line = parser_error(["MNIST", "dense", "EBP", "--seed", seed, "--seeds", "1-2"], capsys)
        assert "not allowed with argument --seed" in line


@pytest.mark.backend_independent
def test_save_with_load_is_refused_in_one_line(tmp_path, capsys):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"")
    assert main(["MNIST", "dense", "EBP", "-s", "-l", str(weights),
                 "--output-dir", str(tmp_path / "out")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "drop -s" in errors[0]
    assert sorted(tmp_path.iterdir()) == [weights]


def test_print_config_shows_every_hyperparameter_and_path_then_exits(tmp_path, capsys):
    argv = ["MNIST", "loccon", "BrainProp", "-s", "--seeds", "3,5", "--learning-rate", "0.05",
            "--output-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data"),
            "--tensorboard", str(tmp_path / "tb"), "--print-config"]
    assert main(argv) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["hyperparameters"] == {
        "batch_size": 32, "learning_rate": 0.05, "lr_schedule":
        "learning_rate * 0.5 ** (epoch // 100)", "max_epochs": 500, "patience": 45,
        "min_delta": 0.001, "init_std": 0.005, "l2": 0.0, "padding": "valid",
        "optimizer": "SGD, no momentum", "epsilon": 0.02, "feedback": "symmetric",
        "batchnorm_statistics": "release"}
    assert config["data"] == str(tmp_path / "data") and config["validation"] == "test set"
    assert [run["seed"] for run in config["runs"]] == [3, 5]
    assert config["runs"][1]["files"]["weights"] == str(
        tmp_path / "out" / "MNIST_loccon_BrainProp_seed5_weights.weights.h5")
    assert config["runs"][0]["tensorboard"] == str(tmp_path / "tb" / "MNIST_loccon_BrainProp_seed3")
    assert not list(tmp_path.iterdir())  # nothing read, nothing written


def test_a_weight_file_that_does_not_fit_is_refused_before_the_model_summary(trained, capsys):
    _, out, summary = trained  # MNIST conv weights, loaded into MNIST dense
    weights = out / summary["files"]["weights"]
    capsys.readouterr()
    assert main(["MNIST", "dense", "EBP", "--data-dir", str(out.parent / "data"),
                 "-l", str(weights)]) == 2
    printed = capsys.readouterr()
    assert "Total params" not in printed.out and "Model:" not in printed.out
    assert len(printed.err.strip().splitlines()) == 1


def test_a_seed_after_another_trains_as_it_would_alone(two_seeds):
    assert _history(two_seeds / "both", 2) == _history(two_seeds / "alone", 2)


def test_validation_split_summary_reports_test_accuracy_of_the_best_epoch(two_seeds, capsys):
    out, data = two_seeds / "both", two_seeds / "data"
    summary = json.loads((out / "MNIST_dense_EBP_seed1_summary.json").read_text())
    assert (summary["train_images"], summary["validation_images"]) == (225, 75)
    assert summary["test_images"] == 100 and summary["validation_split"] == 0.25
    capsys.readouterr()
    # The saved weights are the best epoch's; on the test set they give exactly the
    # accuracy the summary reports.
    weights = out / summary["files"]["weights"]
    assert main(["MNIST", "dense", "EBP", "--data-dir", str(data), "-l", str(weights)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {summary['test_accuracy_at_best_epoch']:.4f}"


def test_the_same_seed_trains_the_same_run_bit_for_bit_and_another_seed_does_not(tmp_path):
    """Initial weights, dropout masks, exploration choices and the shuffling all follow
    the seed (BrainProp's conv network has every one of them)."""
    import h5py

    data = write_learnable_mnist(tmp_path / "data", n_train=256, n_test=64)

    def run(seed: int, folder: str):
        out = tmp_path / folder
        assert main(["MNIST", "conv", "BrainProp", "-s", "--data-dir", str(data),
                     "--output-dir", str(out), "--epochs", "2", "--batch-size", "32",
                     "--seed", str(seed)]) == 0
        arrays = []
        with h5py.File(next(out.glob("*.weights.h5"))) as weights:
            weights.visititems(lambda name, item: arrays.append((name, item[()]))
                               if isinstance(item, h5py.Dataset) else None)
        with open(out / f"MNIST_conv_BrainProp_seed{seed}_history.pkl", "rb") as f:
            return pickle.load(f)[2], arrays

    history, weights = run(1, "first")
    again_history, again_weights = run(1, "again")
    other_history, _ = run(2, "other")
    assert again_history == history
    assert [name for name, _ in again_weights] == [name for name, _ in weights]
    for (_, again), (_, first) in zip(again_weights, weights, strict=True):
        np.testing.assert_array_equal(again, first)
    assert other_history["accuracy"] != history["accuracy"]


def test_a_run_with_kolen_pollack_feedback_saves_weights_that_l_evaluates(tmp_path, capsys):
    npz = tmp_path / "tiny.npz"
    (write_learnable_mnist(tmp_path, n_train=256, n_test=128, seed=2) / "mnist.npz").rename(npz)
    out = tmp_path / "out"
    feedback = ["--feedback", "kolen-pollack"]
    assert main([str(npz), "conv", "BrainProp", *feedback, "-s", "--epochs", "2",
                 "--batch-size", "32", "--output-dir", str(out)]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["config"]["feedback"] == "kolen-pollack"
    assert summary["hyperparameters"]["feedback"] == "kolen-pollack"
    weights = str(out / summary["files"]["weights"])
    capsys.readouterr()
    assert main([str(npz), "conv", "BrainProp", *feedback, "--batch-size", "32",
                 "-l", weights]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {summary['best_val_accuracy']:.4f}"
    # Without its feedback weights the network is another one: refused in one line.
    assert main([str(npz), "conv", "BrainProp", "-l", weights]) == 2
    assert "--feedback" in capsys.readouterr().err
