"""Reproducing a table: which runs, skipping those done, progress, and the report."""

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import write_learnable_mnist
from test_report import write_run

import brainprop.tables.reproduce as reproduce_module
from brainprop.tables.reproduce import configurations, main
from brainprop.utils.errors import BrainPropError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.backend_independent
def test_tables_hold_the_paper_rows_for_both_rules():
    table1 = configurations("table1")
    assert len(table1) == 14 and table1[:2] == [("MNIST", "dense", "BrainProp"),
                                                ("MNIST", "dense", "EBP")]
    assert {(d, a) for d, a, _ in table1} == {
        ("MNIST", "dense"), ("MNIST", "conv"), ("MNIST", "loccon"), ("CIFAR10", "conv"),
        ("CIFAR10", "loccon"), ("CIFAR100", "conv"), ("CIFAR100", "loccon")}
    assert {d for d, a, _ in configurations("table2")} == {"CIFAR10", "CIFAR100", "TinyImageNet"}
    assert len(configurations("table2")) == 6


@pytest.mark.backend_independent
def test_only_keeps_the_named_rows_in_table_order():
    assert configurations("table1", ["CIFAR10/conv/EBP", "MNIST/conv"]) == [
        ("MNIST", "conv", "BrainProp"), ("MNIST", "conv", "EBP"), ("CIFAR10", "conv", "EBP")]


@pytest.mark.backend_independent
@pytest.mark.parametrize("entry", ["CIFAR10/deep", "MNIST", "MNIST/dense/Hebb"])
def test_only_refuses_rows_not_in_the_table(entry):
    with pytest.raises(BrainPropError, match="not in table1"):
        configurations("table1", [entry])


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    data = write_learnable_mnist(base / "data", n_train=300, n_test=100)
    argv = ["table1", "--runs-dir", str(base / "runs"), "--data-dir", str(data), "--epochs", "2"]
    # Two runs at once, one core each.
    assert main([*argv, "--seeds", "1", "--only", "MNIST/dense", "--jobs", "2"]) == 0
    return base, argv


@pytest.mark.backend_independent
def test_reproduce_runs_every_configuration_and_seed_then_reports(reproduced):
    base, _ = reproduced
    summaries = sorted(p.name for p in (base / "runs").glob("*_summary.json"))
    assert summaries == [f"MNIST_dense_{rule}_seed1_summary.json" for rule in ("BrainProp", "EBP")]
    tables = (base / "runs" / "report" / "tables.csv").read_text().splitlines()
    assert [row.split(",")[1:6] for row in tables[1:]] == [
        ["MNIST", "dense", rule, "1", "1"] for rule in ("BrainProp", "EBP")]
    assert (base / "runs" / "report" / "figure5.pdf").read_bytes().startswith(b"%PDF")


def alone(argv, out, cores):
    """main.py in a process of its own, pinned to `cores`, as a user would run it."""
    pinned = (f"import os, runpy, sys; os.sched_setaffinity(0, {set(cores)!r}); "
              f"sys.argv = ['main.py', *{argv!r}]; runpy.run_path('main.py', run_name='__main__')")
    subprocess.run([sys.executable, "-c", pinned], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out


@pytest.mark.slow
def test_runs_side_by_side_train_as_each_would_alone_with_as_many_threads(reproduced):
    base, _ = reproduced
    data = base / "data"
    for rule in ("BrainProp", "EBP"):
        stem = f"MNIST_dense_{rule}_seed1"
        log = (base / "runs" / "logs" / f"{stem}.log").read_text()
        cores = [int(c) for c in re.search(r"cores (\d+(?:,\d+)*)", log)[1].split(",")]
        assert len(cores) == max(1, len(os.sched_getaffinity(0)) // 2)
        out = alone([*stem.split("_")[:3], "-s", "--seed", "1", "--output-dir",
                     str(base / f"alone_{rule}"), "--data-dir", str(data), "--epochs", "2",
                     "--patience", "45"], base / f"alone_{rule}", cores)
        [side_by_side] = pickle.loads((base / "runs" / f"{stem}_history.pkl").read_bytes())[2:]
        [by_itself] = pickle.loads((out / f"{stem}_history.pkl").read_bytes())[2:]
        assert side_by_side.keys() == by_itself.keys()
        for key in side_by_side:  # bit for bit
            assert side_by_side[key] == by_itself[key], key


@pytest.mark.backend_independent
def test_reproduce_again_skips_the_runs_whose_summary_exists(reproduced, capsys):
    base, argv = reproduced
    runs = base / "runs"
    before = {p.name: p.stat().st_mtime_ns for p in runs.iterdir() if p.is_file()}
    # A second seed for EBP: seed 1 is done, only seed 2 runs.
    assert main([*argv, "--seeds", "1-2", "--only", "MNIST/dense/EBP"]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 1 already done" in out and "2/2 runs done, 0 running, 0 failed" in out
    after = {p.name: p.stat().st_mtime_ns for p in runs.iterdir() if p.is_file()}
    assert {name: after[name] for name in before} == before
    assert (runs / "logs" / "MNIST_dense_EBP_seed2.log").is_file()
    assert sorted(set(after) - set(before)) == sorted(
        f"MNIST_dense_EBP_seed2{suffix}"
        for suffix in ("_accuracy.pdf", "_accuracy.png", "_history.json", "_history.pkl", "_log.csv",
                       "_summary.json", "_weights.weights.h5"))
    assert json.loads((runs / "MNIST_dense_EBP_seed2_summary.json").read_text())["seed"] == 2
    ebp = [row for row in (runs / "report" / "tables.csv").read_text().splitlines()
           if ",EBP," in row]
    assert ebp[0].split(",")[4:6] == ["2", "1 2"]


@pytest.mark.backend_independent
def test_reproduce_refuses_bad_only_in_one_line(tmp_path, capsys):
    assert main(["table2", "--runs-dir", str(tmp_path), "--only", "MNIST/dense"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("reproduce: error: --only MNIST/dense")


@pytest.mark.backend_independent
def test_every_data_set_is_checked_before_the_first_run(tmp_path, capsys):
    data = write_learnable_mnist(tmp_path / "data", n_train=200, n_test=100)
    # A CIFAR10 file that is no CIFAR10: the loader refuses it when the run starts.
    (data / "cifar-10-batches-py").mkdir()
    runs = tmp_path / "runs"
    argv = ["table1", "--runs-dir", str(runs), "--data-dir", str(data), "--epochs", "1",
            "--seeds", "1", "--only", "MNIST/dense/EBP", "CIFAR10/conv/EBP", "--jobs", "2"]
    assert main(argv) == 2  # every data set is checked before the first run
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar" in err[0].lower()
    assert not list(runs.glob("*_summary.json"))


@pytest.mark.backend_independent
@pytest.mark.slow
def test_a_failing_run_stops_no_other_and_the_report_covers_those_that_finished(
        tmp_path, capsys):
    data = write_learnable_mnist(tmp_path / "data", n_train=200, n_test=100)
    runs = tmp_path / "runs"
    # EBP's interrupted run left a backup that cannot be read: resuming it fails.
    (runs / ".MNIST_dense_EBP_seed1.backup").mkdir(parents=True)
    (runs / ".MNIST_dense_EBP_seed1.backup" / "run_state.json").write_text("{not json")
    argv = ["table1", "--runs-dir", str(runs), "--data-dir", str(data), "--epochs", "1",
            "--seeds", "1", "--only", "MNIST/dense", "--jobs", "2"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    failed = [ln for ln in captured.err.splitlines() if " failed (exit" in ln]
    assert len(failed) == 1 and failed[0].startswith(
        "[reproduce] MNIST_dense_EBP_seed1 failed (exit status ")
    assert "1 of 2 runs failed" in captured.err
    assert "1/2 runs done, 0 running, 1 failed, 0 left" in captured.out + captured.err
    assert [p.name for p in runs.glob("*_summary.json")] == ["MNIST_dense_BrainProp_seed1_summary.json"]
    rows = (runs / "report" / "tables.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1:4] for row in rows] == [["MNIST", "dense", "BrainProp"]]
    # Nothing of the failed run was lost or overwritten.
    assert (runs / ".MNIST_dense_EBP_seed1.backup" / "run_state.json").read_text() == "{not json"


@pytest.mark.backend_independent
@pytest.mark.parametrize("options, message", [
    (["--executor", "pbs"], "argument --executor: invalid choice: 'pbs'"),
    (["--jobs", "0"], "argument --jobs: '0' must be a finite number above 0"),
    (["--gpus", "7"], "--gpus 7: no GPU 7 on this machine"),
    (["--partition", "gpu"], "--partition only apply to --executor slurm"),
    (["--wait", "--time-limit", "60"], "--time-limit, --wait only apply to --executor slurm"),
    (["--executor", "slurm", "--jobs", "2"], "--jobs and --gpus are for --executor local"),
])
def test_bad_executor_options_end_in_one_line(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    try:
        status = main(["table1", "--runs-dir", str(tmp_path / "runs"), *options])
    except SystemExit as exit:  # argparse's own checks
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.backend_independent
def test_slurm_without_its_commands_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["table1", "--runs-dir", str(tmp_path / "runs"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sbatch, squeue, scontrol not found" in err[0]


@pytest.mark.backend_independent
def test_slurm_without_submitit_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails
    assert main(["table1", "--runs-dir", str(tmp_path / "runs"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reproduce: error: --executor slurm needs submitit: pip install submitit"]


def _wait_for(condition, what, seconds=240):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _holder(runs, name):
    """The process id that holds run `name`'s lock, or None."""
    from brainprop.runs.outputs import RunFiles, run_holder

    held = run_holder(RunFiles(runs / name))
    return held.pid if held else None


@pytest.mark.backend_independent
@pytest.mark.slow
def test_runs_of_a_killed_driver_are_waited_for_and_counted_by_how_they_end(tmp_path):
    """`kill -9` of a `--jobs 2` driver leaves its two runs training.  The same command
    started again waits for them, saying so: the one that finishes counts done, the one
    that crashes meanwhile is resumed here and finishes; nothing failed, exit 0."""
    import signal

    data = write_learnable_mnist(tmp_path / "data", n_train=2000, n_test=100)
    runs = tmp_path / "runs"
    argv = ["-m", "brainprop.reproduce", "table1", "--runs-dir", str(runs), "--data-dir",
            str(data), "--epochs", "10", "--patience", "45", "--batch-size", "32",
            "--seeds", "1", "--only", "MNIST/dense", "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    brainprop, ebp = "MNIST_dense_BrainProp_seed1", "MNIST_dense_EBP_seed1"
    first = subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        _wait_for(lambda: _holder(runs, brainprop) and _holder(runs, ebp), "both runs to train")
        first.kill()  # as an OOM killer would: its runs go on
        first.wait()
        output = tmp_path / "second.txt"
        with open(output, "w") as out:
            second = subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=env,
                                      stdout=out, stderr=subprocess.STDOUT)
        _wait_for(lambda: f"waiting for {ebp}" in output.read_text(), "the wait to be said")
        # The EBP run crashes once it has a completed epoch to resume from.
        _wait_for(lambda: (runs / f".{ebp}.backup" / "backup.npz").is_file(), "an epoch")
        os.kill(_holder(runs, ebp), signal.SIGKILL)
        assert second.wait(timeout=600) == 0, output.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    text = output.read_text()
    assert re.search(rf"waiting for {brainprop}, which process \d+ is training right now", text)
    assert f"finished {brainprop} (trained by another process)" in text
    assert f"{ebp} is no longer trained by another process" in text
    assert f"finished {ebp} in " in text
    assert "FAILED" not in text and "failed (" not in text
    assert "2/2 runs done, 0 running, 0 failed, 0 left" in text
    starts = [ln for ln in (runs / "logs" / f"{ebp}.log").read_text().splitlines()
              if ln.startswith("[jobs] main.py")]
    assert starts[-1].endswith("--resume")  # resumed from its backup, not started over
    for name in (brainprop, ebp):
        summary = json.loads((runs / f"{name}_summary.json").read_text())
        assert summary["epochs_run"] == 10 and not summary["interrupted"]
    assert sorted(p.name for p in runs.glob("*_summary.json")) == [
        f"{brainprop}_summary.json", f"{ebp}_summary.json"]
    rows = (runs / "report" / "tables.csv").read_text().splitlines()[1:]
    assert [row.split(",")[3] for row in rows] == ["BrainProp", "EBP"]


# --- the feedback table -------------------------------------------------------------------


@pytest.mark.backend_independent
def test_the_feedback_table_is_every_rule_on_the_one_row_given():
    assert configurations("feedback", ["MNIST/dense"]) == [("MNIST", "dense", "BrainProp"),
                                                           ("MNIST", "dense", "EBP")]
    assert configurations("feedback", ["FashionMNIST/conv"])[1] == ("FashionMNIST", "conv", "EBP")
    assert configurations("feedback", ["data/pets/conv"])[0] == ("data/pets", "conv", "BrainProp")


@pytest.mark.backend_independent
def test_reproduce_feedback_plans_rules_by_kinds_by_seeds_and_skips_those_done(
        tmp_path, capsys, monkeypatch):
    data = write_learnable_mnist(tmp_path / "data", n_train=100, n_test=50)
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "MNIST", "dense", "EBP", 2, 1, 0.5, 1, feedback="random")  # done
    write_run(runs, "MNIST", "dense", "EBP", 2, 1, 0.5, 1, feedback="sign", stem_suffix="_2")
    started = []
    monkeypatch.setattr(reproduce_module, "run_locally",
                        lambda planned, *args, **kwargs: started.extend(planned) or [])
    assert main(["feedback", "--only", "MNIST/dense", "--feedback-kinds", "symmetric,random,sign",
                 "--seeds", "1-2", "--runs-dir", str(runs), "--data-dir", str(data),
                 "--epochs", "3", "--no-report"]) == 0
    assert "feedback: 12 runs, 2 already done" in capsys.readouterr().out
    expected = [f"MNIST_dense_{rule}{'' if kind == 'symmetric' else '_' + kind}_seed{seed}"
                for seed in (1, 2) for rule in ("BrainProp", "EBP")
                for kind in ("symmetric", "random", "sign")
                if (rule, seed) != ("EBP", 2) or kind == "symmetric"]
    assert [run.name for run in started] == expected
    for run in started:
        argv = list(run.argv)
        assert argv[:3] == ["MNIST", "dense", run.name.split("_")[2]]
        assert argv[argv.index("--epochs") + 1] == "3" and "-s" in argv
        kind = run.name.split("_")[3]
        if kind.startswith("seed"):  # the paper's feedback: the option left out, as table1's
            assert "--feedback" not in argv
        else:
            assert argv[argv.index("--feedback") + 1] == kind
        assert run.log == runs / "logs" / f"{run.name}.log"


@pytest.mark.backend_independent
def test_the_paper_tables_skip_only_runs_of_the_feedback_they_run(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    data = write_learnable_mnist(tmp_path / "data", n_train=100, n_test=50)
    write_run(runs, "MNIST", "dense", "EBP", 1, 1, 0.5, 1, feedback="random")
    started = []
    monkeypatch.setattr(reproduce_module, "run_locally",
                        lambda planned, *args, **kwargs: started.extend(planned) or [])
    argv = ["table1", "--only", "MNIST/dense/EBP", "--seeds", "1", "--runs-dir", str(runs),
            "--data-dir", str(data), "--no-report"]
    assert main(argv) == 0
    assert [run.name for run in started] == ["MNIST_dense_EBP_seed1"]
    started.clear()
    assert main([*argv, "--feedback", "random"]) == 0
    assert started == [] and "table1: 1 run, 1 already done" in capsys.readouterr().out


@pytest.mark.backend_independent
@pytest.mark.parametrize("options, message", [
    (["feedback"], "reproduce: error: feedback compares the kinds of feedback on one data set "
     "and network: give one --only DATASET/ARCH, e.g. --only MNIST/conv"),
    (["feedback", "--only", "MNIST/dense", "MNIST/conv"],
     "reproduce: error: --only MNIST/dense MNIST/conv names 2 rows; feedback compares"),
    (["feedback", "--only", "MNIST/dense/EBP"],
     "reproduce: error: --only MNIST/dense/EBP is not DATASET/ARCH (feedback runs every rule)"),
    (["feedback", "--only", "MNIST"], "reproduce: error: --only MNIST is not DATASET/ARCH"),
    (["feedback", "--only", "MNIST/dense", "--feedback", "random"],
     "reproduce: error: feedback runs the kinds --feedback-kinds names (default: all of them), "
     "not --feedback: drop --feedback random"),
    (["table1", "--feedback-kinds", "random"],
     "reproduce: error: --feedback-kinds is for the feedback table; table1 runs the one kind "
     "--feedback names"),
    (["feedback", "--only", "MNIST/dense", "--feedback-kinds", "random,hebbian"],
     "argument --feedback-kinds: 'hebbian' is not a kind of feedback: give some of "
     "symmetric,random,sign,kolen-pollack,direct"),
])
def test_the_feedback_table_refuses_what_it_cannot_run_in_one_line(tmp_path, capsys, options,
                                                                  message):
    try:
        status = main([*options, "--runs-dir", str(tmp_path / "runs")])
    except SystemExit as exit:  # argparse's own checks
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


@pytest.mark.backend_independent
@pytest.mark.slow
def test_reproduce_feedback_trains_each_kind_and_reports_the_comparison(tmp_path):
    data = write_learnable_mnist(tmp_path / "data", n_train=200, n_test=100)
    runs = tmp_path / "runs"
    assert main(["feedback", "--only", "MNIST/dense", "--feedback-kinds", "symmetric,random",
                 "--seeds", "1", "--epochs", "1", "--runs-dir", str(runs), "--data-dir", str(data),
                 "--jobs", "2"]) == 0
    assert sorted(p.name.removesuffix("_summary.json") for p in runs.glob("*_summary.json")) == [
        "MNIST_dense_BrainProp_random_seed1", "MNIST_dense_BrainProp_seed1",
        "MNIST_dense_EBP_random_seed1", "MNIST_dense_EBP_seed1"]
    summary = json.loads((runs / "MNIST_dense_EBP_random_seed1_summary.json").read_text())
    assert summary["hyperparameters"]["feedback"] == "random"
    feedback = (runs / "report" / "feedback.csv").read_text().splitlines()
    assert [row.split(",")[2:5] for row in feedback[1:]] == [
        ["BrainProp", "symmetric", "1"], ["BrainProp", "random", "1"],
        ["EBP", "symmetric", "1"], ["EBP", "random", "1"]]
    markdown = (runs / "report" / "tables.md").read_text()
    assert "| dataset | architecture | rule | symmetric | random |" in markdown
    # The random runs measured their angles: the report draws them.
    history = json.loads((runs / "MNIST_dense_EBP_random_seed1_history.json").read_text())
    assert any(key.startswith("update_angle/") for key in history["history"])
    assert (runs / "report" / "feedback_angles.png").read_bytes().startswith(b"\x89PNG")
    assert [row.split(",")[3] for row in (runs / "report" / "tables.csv").read_text().splitlines()[1:]] == [
        "BrainProp", "EBP"]
