"""Runs in parallel processes: GPUs round-robin, cores shared out, failures kept apart."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainprop.runs.jobs import (
    SHARED_GPU_ENVIRONMENT,
    PlannedRun,
    Progress,
    format_duration,
    parse_gpus,
    run_locally,
    share_cores,
    visible_gpus,
)
from brainprop.utils.errors import BrainPropError

pytestmark = pytest.mark.backend_independent


def test_cores_are_shared_out_disjoint_and_even():
    assert share_cores(2, range(8)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert share_cores(3, range(8)) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert share_cores(2, [3, 5]) == [[3], [5]]
    # More processes than cores: one core each, shared round-robin.
    assert share_cores(5, range(2)) == [[0], [1], [0], [1], [0]]


def test_progress_counts_every_state_and_shares_the_estimate_among_processes(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("brainprop.runs.jobs.time.monotonic", lambda: clock[0])
    progress = Progress(total=6, jobs=2, done=1)
    a = PlannedRun("a", (), Path("."), Path("a.log"), kind="A")
    b = PlannedRun("b", (), Path("."), Path("b.log"), kind="B")
    c = PlannedRun("c", (), Path("."), Path("c.log"), kind="A")
    assert progress.estimate_left(["A"]) is None
    for run in (a, b, c):
        progress.start(run)
    clock[0] += 10
    assert progress.finish(a, ok=True) == 10
    clock[0] += 50
    progress.finish(b, ok=False)  # a failure costs no estimate
    # Left: one A waiting (10 s) and C running for 60 s of its 10 s (nothing): 10 s / 2.
    assert progress.estimate_left(["A"]) == 5.0
    line = progress.line(["A"])
    assert line.startswith("2/6 runs done, 1 running, 1 failed, 2 left; 0:01:00 elapsed")
    assert line.endswith("about 0:00:05 left")
    assert format_duration(3725) == "1:02:05"
    progress.finish(c, ok=False, stopped=True)  # by a signal: neither done nor failed
    assert progress.line().startswith("2/6 runs done, 0 running, 1 failed, 1 stopped, 2 left;")


def test_gpus_named_must_be_there(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert visible_gpus() == ["0", "2"]
    assert parse_gpus("2,0") == ["2", "0"]
    with pytest.raises(BrainPropError, match=r"no GPU 1 on this machine; GPUs here: 0, 2"):
        parse_gpus("0,1")
    with pytest.raises(BrainPropError, match="once each"):
        parse_gpus("0,0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: no GPU
    with pytest.raises(BrainPropError, match="GPUs here: none"):
        parse_gpus("0")


def failing_runs(tmp_path, count):
    """Runs that start, log where they run, and fail fast: a missing data folder."""
    return [
        PlannedRun(f"run{i}", ("MNIST", "dense", "EBP", "-s", "--output-dir", str(tmp_path / "out"),
                        "--data-dir", str(tmp_path / "missing")),
            tmp_path / "out", tmp_path / "logs" / f"run{i}.log")
        for i in range(count)
    ]


def where_it_ran(log: Path) -> dict[str, str]:
    line = next(ln for ln in log.read_text().splitlines() if " process " in ln)
    return dict(re.findall(r"(cores|[A-Z_]+)[ =]([0-9a-z]+(?:,[0-9]+)*)", line))


def test_every_run_fails_alone_and_the_others_go_on(tmp_path):
    runs = failing_runs(tmp_path, 3)
    failures = run_locally(runs, jobs=2)
    assert [f.run.name for f in sorted(failures, key=lambda f: f.run.name)] == [
        "run0", "run1", "run2"]
    for failure in failures:
        assert failure.reason == "exit status 2"
        assert re.fullmatch(
            r"run\d failed \(exit status 2\): main\.py: error: --data-dir .*missing is not a "
            r"folder.* \(log: .*run\d\.log\)", failure.line())


def test_processes_get_disjoint_shares_of_the_cores(tmp_path):
    runs = failing_runs(tmp_path, 2)
    run_locally(runs, jobs=2)
    shares = [set(map(int, where_it_ran(r.log)["cores"].split(","))) for r in runs]
    assert shares[0].isdisjoint(shares[1]) or len(os.sched_getaffinity(0)) == 1
    assert shares[0] | shares[1] == os.sched_getaffinity(0)


def test_gpus_are_handed_out_round_robin_with_memory_taken_as_used(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what the children may use
    runs = failing_runs(tmp_path, 4)
    run_locally(runs, jobs=3, gpus=["1", "3"])
    seen = [where_it_ran(r.log) for r in runs]
    # Slots 0, 1, 2 take GPUs 1, 3, 1; the fourth run takes the first slot to free.
    assert [s["CUDA_VISIBLE_DEVICES"] for s in seen[:3]] == ["1", "3", "1"]
    assert seen[3]["CUDA_VISIBLE_DEVICES"] in ("1", "3")
    for s in seen:
        for name, value in SHARED_GPU_ENVIRONMENT.items():
            assert s[name] == value
        # With GPUs, the cores are not split: the process keeps them all.
        assert set(map(int, s["cores"].split(","))) == os.sched_getaffinity(0)


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no GPU here")
def test_several_runs_share_one_gpu_each_taking_only_what_it_uses(tmp_path):
    """Two processes of the backend on one GPU: neither takes most of its memory."""
    code = (
        "import keras, numpy as np; x = keras.ops.ones((256, 256)); "
        "print(float(keras.ops.sum(keras.ops.matmul(x, x))))"
    )
    env = {**os.environ, **SHARED_GPU_ENVIRONMENT, "CUDA_VISIBLE_DEVICES": "0"}
    processes = [subprocess.Popen([sys.executable, "-c", code + "; import time; time.sleep(20)"],
                                  env=env) for _ in range(2)]
    try:
        import time

        time.sleep(15)
        used, total = map(int, subprocess.run(
            ["nvidia-smi", "--id=0", "--query-gpu=memory.used,memory.total",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True,
        ).stdout.split(","))
        assert used < 0.5 * total
    finally:
        for process in processes:
            process.kill()


@pytest.mark.slow
def test_ctrl_c_stops_every_run_with_its_backup_and_the_same_call_resumes_them(tmp_path):
    import json
    import signal
    import threading
    import time

    from test_cli import write_learnable_mnist

    data = write_learnable_mnist(tmp_path / "data", n_train=3000, n_test=200)
    out = tmp_path / "out"
    runs = [
        PlannedRun(f"MNIST_dense_{rule}_seed1",
            ("MNIST", "dense", rule, "-s", "--output-dir", str(out), "--data-dir", str(data),
             "--epochs", "4"), out, tmp_path / "logs" / f"{rule}.log")
        for rule in ("BrainProp", "EBP")
    ]
    first = runs[0]

    def interrupt_after_the_first_epoch():
        deadline = time.monotonic() + 300
        while not (first.log.exists() and "Epoch 1/4" in first.log.read_text()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    threading.Thread(target=interrupt_after_the_first_epoch, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_locally(runs, jobs=2)
    assert "Interrupted. To continue:" in first.log.read_text()
    assert (out / f".{first.name}.backup").is_dir()

    assert run_locally(runs, jobs=2) == []  # the same call again: resumed, then finished
    starts = [ln for ln in first.log.read_text().splitlines() if ln.startswith("[jobs] main.py")]
    assert len(starts) == 2 and starts[1] == starts[0] + " --resume"
    for run in runs:
        summary = json.loads((out / f"{run.name}_summary.json").read_text())
        assert summary["epochs_run"] == 4 and not summary["interrupted"]


def mnist_runs(tmp_path, count=1, epochs=1):
    """Runs of main.py on a small learnable MNIST, each its own seed."""
    from test_cli import write_learnable_mnist

    data = write_learnable_mnist(tmp_path / "data", n_train=256, n_test=64)
    out = tmp_path / "out"
    return [
        PlannedRun(f"MNIST_dense_EBP_seed{seed}",
                   ("MNIST", "dense", "EBP", "-s", "--output-dir", str(out), "--data-dir",
                    str(data), "--epochs", str(epochs), "--batch-size", "32", "--seed", str(seed)),
                   out, tmp_path / "logs" / f"seed{seed}.log")
        for seed in range(1, count + 1)
    ]


def test_ctrl_c_while_a_run_starts_stops_it_in_one_line_as_stopped(tmp_path, monkeypatch, capsys):
    """The signal reaches the child while Python starts and imports: it is noted there
    and stops the run at its first safe point, without a traceback."""
    import signal

    [run] = mnist_runs(tmp_path)
    real_popen = subprocess.Popen

    def popen_then_ctrl_c(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C the moment the child exists
        return process

    monkeypatch.setattr("brainprop.runs.jobs.subprocess.Popen", popen_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_locally([run], jobs=1, poll_seconds=0.05)
    log = run.log.read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert log.strip().splitlines()[-1] == "main.py: interrupted"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    progress = capsys.readouterr().err
    assert f"stopped {run.name} (exit status 130)" in progress and "FAILED" not in progress
    assert "0/1 runs done, 0 running, 0 failed, 1 stopped, 0 left" in progress


@pytest.mark.slow
def test_ctrl_c_while_a_run_saves_its_last_file_reports_it_done(tmp_path, monkeypatch, capsys):
    """A run complete when the signal came: done in the progress line and the exit status,
    and with nothing left undone the call returns as if no signal had come."""
    import json

    [run] = mnist_runs(tmp_path)
    helper = Path(__file__).parent / "ctrl_c_parent_at.py"

    def command(self, cores=None):
        where = ",".join(map(str, cores)) if cores else "-"
        return [sys.executable, str(helper), "brainprop.runs.outputs:write_summary", "--",
                where, *self.main_argv()]

    monkeypatch.setattr(PlannedRun, "command", command)
    assert run_locally([run], jobs=1, poll_seconds=0.05) == []
    log = run.log.read_text()
    assert "SIGINT: stopping" in log and "Traceback" not in log  # the signal came, noted
    assert log.strip().splitlines()[-1].startswith("Saved ")
    progress = capsys.readouterr().err
    assert f"finished {run.name}" in progress and "stopped" not in progress
    assert "1/1 runs done, 0 running, 0 failed, 0 left" in progress
    summary = json.loads((tmp_path / "out" / f"{run.name}_summary.json").read_text())
    assert summary["stop_reason"] == "max_epochs" and not summary["interrupted"]


def test_a_run_that_ends_is_never_seen_unheld_with_its_backup(tmp_path, monkeypatch):
    """While a finished run drops its backup, a driver waiting for it must see it either
    held or gone: never a backup without its lock, which it would take for a crash and
    resume (a second `--resume` that then finds nothing)."""
    from brainprop.runs import outputs

    run = PlannedRun(name="MNIST_dense_EBP_seed1", argv=(), output_dir=tmp_path,
                     log=tmp_path / "log")
    files = outputs.reserve_run_files(tmp_path, run.name)
    (files.backup / "backup.npz").write_bytes(b"\0" * 64)
    seen = []
    delete = shutil.rmtree

    def rmtree(path, *args, **kwargs):  # what a waiting driver sees after each file
        for inside in sorted(Path(path).rglob("*"), reverse=True):
            inside.unlink() if inside.is_file() else inside.rmdir()
            seen.append((run.trained_by(), run.finished(), run.main_argv()))
        delete(path, *args, **kwargs)

    monkeypatch.setattr(outputs.shutil, "rmtree", rmtree)
    with outputs.hold_run(files):
        assert run.trained_by() == f"process {os.getpid()}"
        files.summary.write_text("{}")
        outputs.drop_backup(files)
    assert seen and all(state == (None, True, []) for state in seen), seen
    assert not files.backup.exists() and list(tmp_path.iterdir()) == [files.summary]
