"""Reproducing a table: which runs, skipping those done, progress, and the report."""

import json

import pytest

from brainprop.errors import BrainPropError
from brainprop.reproduce import Progress, configurations, format_duration, main
from test_cli import write_learnable_mnist


def test_tables_hold_the_paper_rows_for_both_rules():
    table1 = configurations("table1")
    assert len(table1) == 14 and table1[:2] == [("MNIST", "dense", "BrainProp"),
                                                ("MNIST", "dense", "EBP")]
    assert {(d, a) for d, a, _ in table1} == {
        ("MNIST", "dense"), ("MNIST", "conv"), ("MNIST", "loccon"), ("CIFAR10", "conv"),
        ("CIFAR10", "loccon"), ("CIFAR100", "conv"), ("CIFAR100", "loccon")}
    assert {d for d, a, _ in configurations("table2")} == {"CIFAR10", "CIFAR100", "TinyImageNet"}
    assert len(configurations("table2")) == 6


def test_only_keeps_the_named_rows_in_table_order():
    assert configurations("table1", ["CIFAR10/conv/EBP", "MNIST/conv"]) == [
        ("MNIST", "conv", "BrainProp"), ("MNIST", "conv", "EBP"), ("CIFAR10", "conv", "EBP")]


@pytest.mark.parametrize("entry", ["CIFAR10/deep", "MNIST", "MNIST/dense/Hebb"])
def test_only_refuses_rows_not_in_the_table(entry):
    with pytest.raises(BrainPropError, match="not in table1"):
        configurations("table1", [entry])


def test_progress_prices_runs_left_by_their_configuration():
    progress = Progress(total=5, done=1)
    a, b = ("MNIST", "dense", "EBP"), ("MNIST", "conv", "EBP")
    assert progress.estimate_left([a]) is None
    progress.finished(a, 10.0)
    progress.finished(a, 20.0)
    progress.finished(b, 60.0)
    assert progress.done == 4
    # a: mean 15 s; c has no run yet: mean of all finished runs, 30 s.
    assert progress.estimate_left([a, ("MNIST", "loccon", "EBP")]) == 45.0
    assert "4/5 runs done" in progress.line([a]) and "about 0:00:15 left" in progress.line([a])
    assert format_duration(3725) == "1:02:05"


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    data = write_learnable_mnist(base / "data", n_train=300, n_test=100)
    argv = ["table1", "--runs-dir", str(base / "runs"), "--data-dir", str(data), "--epochs", "2"]
    assert main([*argv, "--seeds", "1", "--only", "MNIST/dense"]) == 0
    return base, argv


def test_reproduce_runs_every_configuration_and_seed_then_reports(reproduced):
    base, _ = reproduced
    summaries = sorted(p.name for p in (base / "runs").glob("*_summary.json"))
    assert summaries == [f"MNIST_dense_{rule}_seed1_summary.json" for rule in ("BrainProp", "EBP")]
    tables = (base / "runs" / "report" / "tables.csv").read_text().splitlines()
    assert [row.split(",")[1:6] for row in tables[1:]] == [
        ["MNIST", "dense", rule, "1", "1"] for rule in ("BrainProp", "EBP")]
    assert (base / "runs" / "report" / "figure5.pdf").read_bytes().startswith(b"%PDF")


def test_reproduce_again_skips_the_runs_whose_summary_exists(reproduced, capsys):
    base, argv = reproduced
    runs = base / "runs"
    before = {p.name: p.stat().st_mtime_ns for p in runs.iterdir() if p.is_file()}
    # A second seed for EBP: seed 1 is done, only seed 2 runs.
    assert main([*argv, "--seeds", "1-2", "--only", "MNIST/dense/EBP"]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 1 already done" in out and "2/2 runs done" in out
    after = {p.name: p.stat().st_mtime_ns for p in runs.iterdir() if p.is_file()}
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == sorted(
        f"MNIST_dense_EBP_seed2{suffix}"
        for suffix in ("_accuracy.pdf", "_accuracy.png", "_history.json", "_history.pkl", "_log.csv",
                       "_summary.json", "_weights.weights.h5"))
    assert json.loads((runs / "MNIST_dense_EBP_seed2_summary.json").read_text())["seed"] == 2
    ebp = [row for row in (runs / "report" / "tables.csv").read_text().splitlines()
           if ",EBP," in row]
    assert ebp[0].split(",")[4:6] == ["2", "1 2"]


def test_reproduce_refuses_bad_only_in_one_line(tmp_path, capsys):
    assert main(["table2", "--runs-dir", str(tmp_path), "--only", "MNIST/dense"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("reproduce: error: --only MNIST/dense")
