"""Unlucky moments: a full disk, a crash at the wrong time, two processes on one run."""

import csv
import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from filesystems import small_filesystem
from test_cli import write_learnable_mnist
from test_resume import send_signal_at

from brainprop.runs.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_learnable_mnist(tmp_path_factory.mktemp("data"), n_train=256, n_test=64, seed=5)


def command(data_dir, out, *extra):
    return ["MNIST", "dense", "EBP", "-s", "--data-dir", str(data_dir), "--output-dir",
            str(out), "--epochs", "3", "--batch-size", "32", *extra]


def one_error(capsys) -> str:
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("main.py: error:"), errors
    return errors[0]


# One weight file of the dense network is 12.8 MB, and so is its backup: 20 MB hold the
# best epoch's weights but not the first backup beside them, 32 MB the first backup but
# not the second, written before the first is let go.
@pytest.mark.parametrize("size", ["20m", "32m"], ids=["first-epoch", "second-epoch"])
def test_disk_full_during_training_ends_in_one_line_and_the_run_resumes(
    data_dir, tmp_path, capsys, size
):
    with small_filesystem(tmp_path / "disk", size) as disk:
        assert main(command(data_dir, disk)) == 2
        line = one_error(capsys)
        assert "No space left on device while writing" in line and "--resume" in line
        assert f"{disk}/" in line  # names the file
        assert not list(disk.glob("*_summary.json"))
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        assert main(command(data_dir, disk, "--resume")) == 0
        summary = json.loads(next(disk.glob("*_summary.json")).read_text())
        assert summary["epochs_run"] == 3 and not summary["interrupted"]


def test_a_write_failing_during_training_ends_in_one_line(data_dir, tmp_path, monkeypatch, capsys):
    # Where no small filesystem can be mounted, the failure is injected at a write.
    original = keras.callbacks.CSVLogger.on_epoch_end

    def full(self, epoch, logs=None):
        if epoch == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.filename))
        original(self, epoch, logs)

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", full)
    assert main(command(data_dir, tmp_path)) == 2
    line = one_error(capsys)
    assert "No space left on device while writing" in line and "log.csv" in line
    assert "--resume" in line


def test_a_weight_file_that_cannot_be_written_is_named(tmp_path):
    from brainprop.train.training import _write_failure

    h5py_message = ("[Errno 13] Unable to synchronously create file (unable to open file: "
                    f"name = '{tmp_path}/best.weights.h5', errno = 13, error message = "
                    "'Permission denied', flags = 13, o_flags = 242)")
    assert _write_failure(OSError(h5py_message)) == (
        f"Permission denied while writing {tmp_path}/best.weights.h5")


# --- Ctrl-C at any moment ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TF_LOG = re.compile(r"^(WARNING: All log messages|[IWE]\d{4} )")


def run_process(*args, timeout=300):
    """A real process (the backend of this test session), its stderr without TF's log."""
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, timeout=timeout,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    errors = [line for line in result.stderr.splitlines() if line and not TF_LOG.match(line)]
    return result, errors


def test_ctrl_c_swallowed_by_library_code_during_the_backend_import_still_stops(
    data_dir, tmp_path
):
    result, errors = run_process(ROOT / "tests" / "signal_at_import.py", "keras", "--",
                                 *command(data_dir, tmp_path))
    assert result.returncode == 130, result.stdout[-500:]
    assert errors == ["main.py: interrupted"]
    assert not list(tmp_path.iterdir())  # nothing claimed, nothing trained


def test_ctrl_c_without_save_prints_no_resume_command(data_dir, tmp_path, monkeypatch, capsys):
    send_signal_at(monkeypatch, signal.SIGINT, 0)
    argv = [word for word in command(data_dir, tmp_path) if word != "-s"]
    assert main(argv) == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "--resume" not in last and "nothing was saved" in last


def test_printed_resume_command_is_shell_quoted_and_works(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "my runs; rm -rf ~ ünïcode"
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 0)
        assert main(command(data_dir, out)) == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    printed = last.removeprefix("Interrupted. To continue: ")
    words = shlex.split(printed)
    assert words[:2] == ["python", str(ROOT / "main.py")]  # runs from any folder
    assert str(out) in words and "--resume" in words
    assert main(words[2:]) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert summary["epochs_run"] == 3 and summary["resumed"]


def test_a_new_start_beside_an_interrupted_run_says_how_to_resume_it(
    data_dir, tmp_path, monkeypatch, capsys
):
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 0)
        assert main(command(data_dir, tmp_path)) == 130
    resume = capsys.readouterr().out.strip().splitlines()[-1].removeprefix(
        "Interrupted. To continue: ")
    assert main(command(data_dir, tmp_path)) == 0  # the same command, without --resume
    lines = capsys.readouterr().out.splitlines()
    hint = f"MNIST_dense_EBP_seed1 in {tmp_path} was interrupted and can be resumed with: "
    [said] = [i for i, line in enumerate(lines) if line.startswith(hint)]
    assert lines[said] == f"{hint}{resume}; starting a new run beside it"
    assert said < next(i for i, line in enumerate(lines) if line.startswith("Training "))
    # Both kept: the new run finished as _2, the interrupted one still resumes.
    assert json.loads((tmp_path / "MNIST_dense_EBP_seed1_2_summary.json").read_text())[
        "epochs_run"] == 3
    assert main(shlex.split(resume)[2:]) == 0
    summary = json.loads((tmp_path / "MNIST_dense_EBP_seed1_summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 3
    assert main(command(data_dir, tmp_path)) == 0  # nothing left to resume: no such line
    assert "can be resumed" not in capsys.readouterr().out


# --- the run's name: claimed last, released if nothing was done -------------------------


@pytest.mark.backend_independent
def test_refused_validation_split_claims_no_name(data_dir, tmp_path, capsys):
    assert main([*command(data_dir, tmp_path), "--validation-split", "0.001"]) == 2
    assert "--validation-split" in one_error(capsys)
    assert not list(tmp_path.iterdir())


def test_ctrl_c_before_the_first_epoch_ends_leaves_nothing_and_frees_the_name(
    data_dir, tmp_path, monkeypatch, capsys
):
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 0, batch=2)
        assert main(command(data_dir, tmp_path)) == 130
    assert "nothing was saved" in capsys.readouterr().out.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())
    assert main(command(data_dir, tmp_path, "--resume")) == 2  # nothing to resume
    assert "no interrupted run" in one_error(capsys)
    assert main(command(data_dir, tmp_path)) == 0
    assert [p.name for p in tmp_path.glob("*_summary.json")] == [
        "MNIST_dense_EBP_seed1_summary.json"]


# --- one process per run, with the run's settings -----------------------------------------


@pytest.fixture
def interrupted(data_dir, tmp_path, monkeypatch, capsys):
    """A run stopped by Ctrl-C after its first epoch, waiting for --resume."""
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 0)
        assert main(command(data_dir, tmp_path)) == 130
    capsys.readouterr()
    return tmp_path


def test_resume_with_other_settings_is_refused_listing_the_differences(
    data_dir, interrupted, capsys
):
    before = {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
    argv = command(data_dir, interrupted, "--resume")
    argv[argv.index("--batch-size") + 1] = "64"
    assert main([*argv, "--learning-rate", "0.05"]) == 2
    line = one_error(capsys)
    assert "--batch-size 64 (the run has 32)" in line
    assert "--learning-rate 0.05 (the run has 0.1)" in line
    assert "--epochs" not in line
    after = {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
    assert after == before


def test_resume_with_another_initial_weight_scale_names_the_option_there_is(
    data_dir, interrupted, capsys
):
    assert main([*command(data_dir, interrupted, "--resume"), "--init-std", "0.1"]) == 2
    assert "--init-std 0.1 (the run has 0.01)" in one_error(capsys)


def test_a_backup_whose_settings_use_the_earlier_names_still_resumes(
    data_dir, interrupted, capsys
):
    # As backups recorded them before the settings were named by field: by option, the
    # initial weights' scale under its earlier name.
    settings = interrupted / ".MNIST_dense_EBP_seed1.backup" / "settings.json"
    settings.write_text(json.dumps({
        "--epochs": 3, "--patience": 45, "--batch-size": 32, "--learning-rate": 0.1,
        "--validation-split": None, "--weight-std": 0.01}))
    assert main([*command(data_dir, interrupted, "--resume"), "--init-std", "0.1"]) == 2
    assert "--init-std 0.1 (the run has 0.01)" in one_error(capsys)
    assert main(command(data_dir, interrupted, "--resume")) == 0
    summary = json.loads((interrupted / "MNIST_dense_EBP_seed1_summary.json").read_text())
    assert summary["resumed"] and summary["epochs_run"] == 3


def test_second_resume_while_the_first_runs_is_refused_naming_its_process(
    data_dir, interrupted, capsys, monkeypatch
):
    argv = command(data_dir, interrupted, "--resume")
    argv[argv.index("--epochs") + 1] = "3"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *argv[:-1], "--epochs", "3", "--resume"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lock = interrupted / ".MNIST_dense_EBP_seed1.backup" / "lock"
    try:
        deadline = time.monotonic() + 240
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        capsys.readouterr()

        def load_dataset(*args, **kwargs):
            raise AssertionError("the data were loaded before the refusal")

        monkeypatch.setattr("brainprop.data.datasets.load_dataset", load_dataset)
        assert main(command(data_dir, interrupted, "--resume")) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # no model summary: refused at once
        errors = captured.err.strip().splitlines()
        assert len(errors) == 1 and f"being trained by process {first.pid}" in errors[0]
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=240)


# --- kill -9 at the worst moments, then --resume ------------------------------------------


def stopping_early(data_dir, out, *extra):
    """A run that stops early (patience 1) before its 10 epochs: the resumed run must
    not train past the epoch where it stopped."""
    argv = command(data_dir, out, *extra)
    argv[argv.index("--epochs") + 1] = "10"
    return [*argv, "--patience", "1"]


def outputs(out: Path) -> tuple[dict, dict, str]:
    """The summary (times left out), the JSON history and the log of the one run in `out`."""
    [path] = out.glob("*_summary.json")
    summary = json.loads(path.read_text())
    for key in ("epoch_seconds", "started", "finished", "command", "resumed"):
        summary.pop(key, None)
    summary["config"].pop("resume")
    summary["config"].pop("output_dir")
    history = json.loads((out / summary["files"]["history_json"]).read_text())
    with open(out / summary["files"]["log"], newline="") as f:
        log = [{k: v for k, v in row.items() if k != "epoch_seconds"}  # times vary
               for row in csv.DictReader(f)]
    return summary, history, log


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert main(stopping_early(data_dir, out)) == 0
    summary, history, log = outputs(out)
    assert summary["stop_reason"] == "early_stopping" and summary["epochs_run"] < 10
    return summary, history, log


@pytest.mark.slow
@pytest.mark.parametrize("target, call, when", [
    ("brainprop.train.resume:write_atomically", 1, "before"),  # the first backup never written
    ("brainprop.train.resume:write_atomically", 3, "half"),    # a later backup cut short
    ("brainprop.runs.outputs:plot_accuracy", 1, "before"),    # the final save, first file
    ("brainprop.runs.outputs:write_summary", 1, "after"),     # summary written, backup not gone
], ids=["first-backup", "third-backup-cut", "final-save-start", "final-save-cleanup"])
def test_kill_9_then_resume_completes_as_an_uninterrupted_run(
    data_dir, tmp_path, uninterrupted, capsys, target, call, when
):
    killed, _ = run_process(ROOT / "tests" / "kill_at.py", target, call, when, "--",
                            *stopping_early(data_dir, tmp_path))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert main(stopping_early(data_dir, tmp_path, "--resume")) == 0
    assert "Traceback" not in capsys.readouterr().err
    summary, history, log = outputs(tmp_path)
    expected_summary, expected_history, expected_log = uninterrupted
    assert summary == expected_summary
    assert history == expected_history
    assert log == expected_log
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_during_the_final_save_finishes_it_and_the_run_is_done(
    data_dir, tmp_path, monkeypatch, capsys
):
    import brainprop.runs.outputs

    original = brainprop.runs.outputs.write_summary

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # noted: the save goes on to its end
        original(*args, **kwargs)

    monkeypatch.setattr(brainprop.runs.outputs, "write_summary", interrupted_save)
    assert main(command(data_dir, tmp_path)) == 0  # complete: nothing was left to stop
    captured = capsys.readouterr()
    assert "SIGINT: stopping" in captured.out
    assert captured.out.strip().splitlines()[-1].startswith("Saved ")
    assert "Traceback" not in captured.err and "interrupted" not in captured.err
    summary = json.loads(next(tmp_path.glob("*_summary.json")).read_text())
    assert summary["epochs_run"] == 3 and not summary["interrupted"]
    assert all((tmp_path / name).exists() for name in summary["files"].values())
    assert not list(tmp_path.glob(".*"))  # complete: no backup left


def test_ctrl_c_during_the_first_seeds_save_stops_before_the_next_seed(
    data_dir, tmp_path, monkeypatch, capsys
):
    import brainprop.runs.outputs

    original = brainprop.runs.outputs.write_summary

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        original(*args, **kwargs)

    monkeypatch.setattr(brainprop.runs.outputs, "write_summary", interrupted_save)
    argv = command(data_dir, tmp_path, "--seeds", "1-2")
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 130  # seed 2 was not run
    assert capsys.readouterr().err.strip().splitlines() == ["main.py: interrupted"]
    summaries = [p.name for p in tmp_path.glob("*_summary.json")]
    assert summaries == ["MNIST_dense_EBP_seed1_summary.json"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("command_main, target", [
    ("brainprop.tables.report:main", "brainprop.tables.report.load_runs"),
    ("brainprop.tables.reproduce:main", "brainprop.tables.reproduce._done_runs"),
], ids=["report", "reproduce"])
def test_ctrl_c_in_report_and_reproduce_ends_in_one_line(
    tmp_path, monkeypatch, capsys, command_main, target
):
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    module, _, name = command_main.partition(":")
    run = getattr(importlib.import_module(module), name)
    argv = [str(tmp_path)] if "report" in module else ["table1", "--runs-dir", str(tmp_path)]
    assert run(argv) == 130
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].endswith("interrupted")
