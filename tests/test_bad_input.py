"""Bad input never costs work: one line, a non-zero exit, and no file touched."""

import json
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import write_learnable_mnist

from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model
from brainprop.runs.cli import main


def saved_weights(model, path):
    """`path`, holding `model`'s weights as Keras' `save_weights` writes them."""
    model.save_weights(str(path))
    return path


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(argv, folder: Path, capsys) -> str:
    """Run the CLI on bad input: exit 2, one line on stderr, `folder` untouched."""
    before = snapshot(folder)
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse
        code = exit_info.code
    assert code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "error" in errors[0] and "Traceback" not in errors[0]
    assert snapshot(folder) == before
    return errors[0]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return write_learnable_mnist(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=32)


@pytest.fixture
def workspace(tmp_path, mnist):
    """A folder holding the data, an output folder and weight files, all watched."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist.npz").write_bytes((mnist / "mnist.npz").read_bytes())
    (tmp_path / "out").mkdir()
    return tmp_path


def train_args(workspace, *extra):
    return ["MNIST", "dense", "EBP", "-s", "--data-dir", str(workspace / "data"),
            "--output-dir", str(workspace / "out"), "--epochs", "1", *extra]


def load_args(workspace, weights):
    return ["MNIST", "dense", "EBP", "-l", str(weights), "--data-dir", str(workspace / "data")]


# --- weight files --------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_weight_file_that_does_not_exist(workspace, capsys):
    assert "does not exist" in refused(load_args(workspace, workspace / "no.h5"), workspace, capsys)


@pytest.mark.backend_independent
def test_weight_file_that_is_not_hdf5(workspace, capsys):
    (workspace / "notes.h5").write_text("these are not weights")
    assert "not an HDF5" in refused(load_args(workspace, workspace / "notes.h5"), workspace, capsys)


def test_weight_file_of_another_architecture(workspace, capsys):
    path = saved_weights(build_model(ARCHITECTURES["conv"], RULES["EBP"], (28, 28, 1), 10),
                         workspace / "c.weights.h5")
    assert "architecture" in refused(load_args(workspace, path), workspace, capsys)


def test_weight_file_for_another_number_of_classes(workspace, capsys):
    path = saved_weights(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 100),
                         workspace / "d.weights.h5")
    line = refused(load_args(workspace, path), workspace, capsys)
    assert "(500, 10)" in line and "(500, 100)" in line


def test_weight_file_truncated(workspace, capsys):
    path = saved_weights(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10),
                         workspace / "w.weights.h5")
    path.write_bytes(path.read_bytes()[:5000])
    assert "w.weights.h5" in refused(load_args(workspace, path), workspace, capsys)


@pytest.mark.backend_independent
def test_resume_cannot_be_combined_with_loading_weights(workspace, capsys):
    path = saved_weights(build_model(ARCHITECTURES["dense"], RULES["EBP"], (28, 28, 1), 10),
                         workspace / "w.weights.h5")
    assert "--resume" in refused([*load_args(workspace, path), "--resume"], workspace, capsys)


# --- data files ----------------------------------------------------------------------------


def rewrite_mnist(workspace, **arrays):
    path = workspace / "data" / "mnist.npz"
    with np.load(path) as stored:
        contents = {**dict(stored), **arrays}
    np.savez(path, **contents)


@pytest.mark.backend_independent
def test_data_file_missing(workspace, capsys):
    (workspace / "data" / "mnist.npz").unlink()
    assert "mnist.npz" in refused(train_args(workspace), workspace, capsys)


@pytest.mark.backend_independent
def test_data_file_truncated(workspace, capsys):
    path = workspace / "data" / "mnist.npz"
    path.write_bytes(path.read_bytes()[:3000])
    assert "mnist.npz" in refused(train_args(workspace), workspace, capsys)


@pytest.mark.backend_independent
def test_data_file_with_arrays_of_wrong_shape(workspace, capsys):
    rewrite_mnist(workspace, x_train=np.zeros((64, 5), np.uint8))
    assert "shape" in refused(train_args(workspace), workspace, capsys)


@pytest.mark.backend_independent
def test_data_file_with_arrays_of_wrong_type(workspace, capsys):
    rewrite_mnist(workspace, x_test=np.zeros((32, 28, 28), np.float64))
    assert "float64" in refused(train_args(workspace), workspace, capsys)


# --- output directory and numbers ----------------------------------------------------------


@pytest.mark.backend_independent
def test_output_directory_that_cannot_be_written(workspace, capsys):
    (workspace / "a-file").write_text("")
    argv = train_args(workspace)
    argv[argv.index("--output-dir") + 1] = str(workspace / "a-file" / "runs")
    assert "output directory" in refused(argv, workspace, capsys)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "option", ["--epochs", "--batch-size", "--learning-rate", "--patience", "--init-std"]
)
@pytest.mark.parametrize("value", ["0", "-3", "ten", "nan", "inf"])
def test_zero_negative_or_non_numeric_numbers(workspace, capsys, option, value):
    line = refused([*train_args(workspace), option, value], workspace, capsys)
    assert option in line


@pytest.mark.backend_independent
@pytest.mark.parametrize("args, expected", [
    (["--seed", "-1"], "seed -1 is out of range: seeds go from 0 to 4294967295"),
    (["--seed", "4294967296"], "out of range"),
    (["--seed", "1.5"], "not a seed"),
    (["--seeds", "1-10000000000"], "seed 10000000000 is out of range"),
    (["--seeds", "0-4294967295"], "names 4294967296 seeds; at most 10000"),
    (["--seeds", "1-2,5-3"], "'5-3' in '1-2,5-3' runs backwards; write 3-5"),
    (["--epochs", "1e9"], "'1e9' is not a whole number"),
], ids=["seed-negative", "seed-2**32", "seed-fraction", "seeds-huge", "seeds-too-many",
        "seeds-backwards", "epochs-1e9"])
def test_numbers_out_of_range_are_refused_before_anything_is_allocated(
    workspace, capsys, args, expected
):
    assert expected in refused([*train_args(workspace), *args], workspace, capsys)


def test_seeds_at_both_ends_of_the_range_train(workspace):
    for seed in ("0", "4294967295"):
        assert main([*train_args(workspace), "--seed", seed, "--batch-size", "32"]) == 0
    names = sorted(p.name for p in (workspace / "out").glob("*_summary.json"))
    assert names == ["MNIST_dense_EBP_seed0_summary.json",
                     "MNIST_dense_EBP_seed4294967295_summary.json"]


@pytest.mark.backend_independent
def test_weight_file_that_is_a_folder(workspace, capsys):
    line = refused(load_args(workspace, workspace / "out"), workspace, capsys)
    assert "is a folder, not a weight file" in line


@pytest.mark.backend_independent
@pytest.mark.parametrize("link", ["dangling", "loop", "inside-loop"])
def test_output_directory_that_is_a_broken_link(workspace, capsys, link):
    (workspace / "dangling").symlink_to(workspace / "nowhere")
    (workspace / "loop").symlink_to(workspace / "loop-back")
    (workspace / "loop-back").symlink_to(workspace / "loop")
    target = {"dangling": "dangling", "loop": "loop", "inside-loop": "loop/runs"}[link]
    argv = train_args(workspace)
    argv[argv.index("--output-dir") + 1] = str(workspace / target)
    line = refused(argv, workspace, capsys)
    assert "symbolic link to nothing (or one of a loop of links)" in line


@pytest.mark.backend_independent
def test_class_order_for_a_dataset_without_wnids(workspace, capsys):
    line = refused([*train_args(workspace), "--class-order", "listdir"], workspace, capsys)
    assert "--class-order numbers the classes of TinyImageNet only" in line


@pytest.mark.backend_independent
def test_unknown_option(workspace, capsys):
    assert "--epoch" in refused([*train_args(workspace), "--epoch", "3"], workspace, capsys)


# --- a diverging run -----------------------------------------------------------------------


def test_nan_loss_stops_training_keeps_best_weights_and_says_why(workspace, monkeypatch, capsys):
    # A sane first epoch, then a learning rate that blows the weights up.
    monkeypatch.setattr(
        "brainprop.train.training.learning_rate_at", lambda epoch, lr: lr if epoch == 0 else 1e30
    )
    argv = train_args(workspace, "--learning-rate", "0.1", "--batch-size", "16")
    argv[argv.index("--epochs") + 1] = "5"
    assert main(argv) == 0
    summary = json.loads(next((workspace / "out").glob("*_summary.json")).read_text())
    assert summary["stop_reason"] == "nan_loss"
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 1
    weights = workspace / "out" / summary["files"]["weights"]
    capsys.readouterr()
    assert main(load_args(workspace, weights)) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {summary['best_val_accuracy']:.4f}"


def test_run_diverging_from_the_first_epoch_keeps_no_weights(workspace, capsys):
    argv = train_args(workspace, "--learning-rate", "1e30", "--batch-size", "16")
    assert main(argv) == 0
    summary = json.loads(next((workspace / "out").glob("*_summary.json")).read_text())
    assert summary["stop_reason"] == "nan_loss"
    assert summary["best_epoch"] == 0 and summary["best_val_accuracy"] is None
    assert "weights" not in summary["files"]
    assert not list((workspace / "out").glob("*weights*"))


def test_ctrl_c_before_training_ends_in_one_line(workspace, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("brainprop.data.datasets.load_dataset", interrupted)
    assert main(train_args(workspace)) == 130
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "interrupted" in errors[0]


# --- any command line ----------------------------------------------------------------------

WORDS = ["MNIST", "CIFAR10", "CIFAR100", "TinyImageNet", "dense", "conv", "loccon", "deep",
         "BrainProp", "EBP", "-s", "-l", "--resume", "--seeds", "--seed", "--epochs",
         "--patience", "--batch-size", "--learning-rate", "--validation-split", "--help"]
VALUES = ["0", "-1", "1", "2", "0.5", "1e-3", "x", "", "1-3", "3-1", "nan", "inf"]
token = st.one_of(st.sampled_from(WORDS), st.sampled_from(VALUES),
                  st.text(string.ascii_letters + string.digits + "-_.,", max_size=8))


@pytest.mark.backend_independent
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(token, max_size=7))
def test_random_command_lines_never_raise_a_traceback(argv, tmp_path, capsys):
    # Training never starts: the data folder is empty, so at worst the run
    # stops at the missing data file.
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    try:
        code = main([*argv, "--data-dir", str(empty), "--output-dir", str(tmp_path / "out")])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1
