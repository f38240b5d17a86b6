"""A table on a real SLURM cluster, and a task requeued mid-run that ends as if never stopped.

`.ci/slurm-up` starts a one-node cluster (it is part of `.ci/run`).  With CI=true a
cluster that is not up fails these tests, printing the daemons' logs; elsewhere they are
skipped with the reason.
"""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import write_learnable_mnist

from brainprop.tables.reproduce import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.backend_independent]

ROOT = Path(__file__).resolve().parent.parent
DAEMON_LOGS = ("/var/log/munge/munged.log", "/var/log/slurm/slurmctld.log",
               "/var/log/slurm/slurmd.log")


def _why_no_cluster() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM commands (sinfo, sbatch) on PATH"
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--responding", "--states=idle,mixed,allocated,completing",
             "--format=%n %t"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 60 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    if not out.stdout.strip():
        return "no SLURM node is up (start one with .ci/slurm-up)"
    return None


def _daemon_logs() -> str:
    parts = []
    for path in DAEMON_LOGS:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()[-40:]
        except OSError as error:
            lines = [f"(unreadable: {error.strerror})"]
        parts.append(f"=== {path} ===\n" + "\n".join(lines))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster():
    reason = _why_no_cluster()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the SLURM cluster is not up: {reason}\n{_daemon_logs()}", pytrace=False)
    pytest.skip(f"the SLURM cluster is not up: {reason}")


def _squeue(job: str) -> list[str]:
    out = subprocess.run(["squeue", "--noheader", "--array", "--format=%T", "--jobs", job],
                         capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else []


def _history(path: Path) -> dict:
    return pickle.loads(path.read_bytes())[2]


def test_a_table_runs_as_a_job_array_and_is_reported(cluster, tmp_path, capsys):
    data = write_learnable_mnist(tmp_path / "data", n_train=300, n_test=100)
    runs = tmp_path / "runs"
    argv = ["table1", "--runs-dir", str(runs), "--data-dir", str(data), "--epochs", "2",
            "--seeds", "1-2", "--only", "MNIST/dense", "--executor", "slurm", "--wait",
            "--time-limit", "20"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    job = re.search(r"submitted job array (\d+): 4 runs", captured.out)[1]
    assert "4/4 runs done, 0 running, 0 failed, 0 left" in captured.err
    stems = [f"MNIST_dense_{rule}_seed{seed}" for seed in (1, 2) for rule in ("BrainProp", "EBP")]
    for stem in stems:
        summary = json.loads((runs / f"{stem}_summary.json").read_text())
        assert summary["epochs_run"] == 2 and not summary["interrupted"]
        assert summary["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
        assert len(_history(runs / f"{stem}_history.pkl")["val_accuracy"]) == 2
        log = (runs / "logs" / f"{stem}.log").read_text()
        assert f"[jobs] main.py {' '.join(stem.split('_')[:3])} -s" in log
        assert "Saved " in log
    # submitit's own files: one task of the array per run.
    assert len(list((runs / "slurm" / job).glob(f"{job}_*_result.pkl"))) == 4
    rows = (runs / "report" / "tables.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[1:6] for row in rows) == [
        ["MNIST", "dense", rule, "2", "1 2"] for rule in ("BrainProp", "EBP")]


def test_a_requeued_task_ends_as_the_uninterrupted_run(cluster, tmp_path, capsys):
    data = write_learnable_mnist(tmp_path / "data", n_train=3000, n_test=200)
    runs = tmp_path / "runs"
    stem = "MNIST_dense_EBP_seed1"
    argv = ["table1", "--runs-dir", str(runs), "--data-dir", str(data), "--epochs", "4",
            "--seeds", "1", "--only", "MNIST/dense/EBP", "--executor", "slurm",
            "--time-limit", "20"]
    assert main(argv) == 0  # submitted, not waited for
    out = capsys.readouterr().out
    job = re.search(r"submitted job array (\d+): 1 run,", out)[1]
    assert f"write the report with: python -m brainprop.report {runs}" in out

    log = runs / "logs" / f"{stem}.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and "Epoch 1/4" in log.read_text()):
        assert time.monotonic() < deadline, "the task did not finish its first epoch"
        assert _squeue(job), "the task ended before it could be signalled"
        time.sleep(0.2)
    # What SLURM sends before a time limit or pre-emption (submitit's --signal).
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    summary = runs / f"{stem}_summary.json"
    deadline = time.monotonic() + 600
    # Until the job has left the queue with the run finished (a requeued job waits
    # AuthInfo=cred_expire seconds before it starts again).
    while (states := _squeue(job)) or not (
            summary.exists() and not json.loads(summary.read_text())["interrupted"]):
        assert time.monotonic() < deadline, f"job {job} not finished: {states}"
        time.sleep(1)
    text = log.read_text()
    assert "Interrupted. To continue:" in text  # the first attempt stopped mid-run ...
    starts = [ln for ln in text.splitlines() if ln.startswith("[jobs] main.py ")]
    assert len(starts) == 2  # ... and the second resumed it
    assert starts[0].startswith("[jobs] main.py MNIST dense EBP -s") and starts[1] == (
        starts[0] + " --resume")

    requeued = json.loads(summary.read_text())
    assert requeued["resumed"] and not requeued["interrupted"]
    # The same run, never stopped, in a process of its own.
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, "main.py", "MNIST", "dense", "EBP", "-s", "--seed", "1",
                    "--output-dir", str(alone), "--data-dir", str(data), "--epochs", "4",
                    "--patience", "45"], cwd=ROOT, check=True, capture_output=True)
    expected = json.loads((alone / f"{stem}_summary.json").read_text())
    for key in ("epochs_run", "best_epoch", "best_val_accuracy", "stop_reason"):
        assert requeued[key] == expected[key], key
    history, expected_history = _history(runs / f"{stem}_history.pkl"), _history(
        alone / f"{stem}_history.pkl")
    assert history.keys() == expected_history.keys()
    for key in history:
        assert history[key] == expected_history[key], key
