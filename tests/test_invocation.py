"""Commands name themselves as they were started, and print commands that run anywhere."""

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
from test_cli import write_learnable_mnist

from brainprop.utils.invocation import PACKAGE_ROOT, Invocation, invoked_as

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Invocation("main.py", ("python", "main.py"), ("python", "main.py"))
NAMES = ("main.py", "brainprop", "brainprop.runs.cli")


def started_as(monkeypatch, argv0, module=None):
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name=module) if module else None
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [argv0])
    return invoked_as(NAMES, DEFAULT)


@pytest.mark.backend_independent
def test_a_script_is_named_as_typed_and_by_its_absolute_path_for_any_folder(monkeypatch):
    monkeypatch.chdir(ROOT)
    invoked = started_as(monkeypatch, "main.py")
    assert invoked.name == "main.py" and invoked.words[1:] == ("main.py",)
    assert invoked.anywhere[1:] == (str(ROOT / "main.py"),)


@pytest.mark.backend_independent
def test_a_module_run_from_a_checkout_takes_the_checkout_along(monkeypatch, tmp_path):
    monkeypatch.chdir(PACKAGE_ROOT)
    invoked = started_as(monkeypatch, "ignored", module="brainprop.runs.cli")
    assert invoked.name.endswith(" -m brainprop.runs.cli")
    assert invoked.anywhere[:2] == ("env", f"PYTHONPATH={PACKAGE_ROOT}")
    assert invoked.anywhere[3:] == ("-m", "brainprop.runs.cli")
    monkeypatch.chdir(tmp_path)  # found elsewhere (installed): the words as they are
    assert started_as(monkeypatch, "ignored", module="brainprop.runs.cli").anywhere[1:] == (
        "-m", "brainprop.runs.cli")


@pytest.mark.backend_independent
def test_another_program_gets_the_default(monkeypatch):
    assert started_as(monkeypatch, "/usr/bin/pytest") is DEFAULT
    assert started_as(monkeypatch, "x", module="pytest") is DEFAULT


def console_script(bin_dir: Path, name: str, target: str, before: str = "") -> Path:
    """What `pip install .` puts on PATH for `name`: a script calling `target`'s main."""
    module, function = target.split(":")
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\nimport sys\n{before}from {module} import "
                      f"{function}\nsys.exit({function}())\n")
    script.chmod(0o755)
    return script


def installed(tmp_path) -> dict:
    """The environment of a shell where the package and its commands are installed."""
    console_script(tmp_path / "bin", "brainprop", "brainprop.runs.cli:main")
    console_script(tmp_path / "bin", "brainprop-reproduce", "brainprop.tables.reproduce:main")
    return {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.backend_independent
@pytest.mark.parametrize("command, name", [
    (["brainprop", "MNIST", "dense", "Greedy"], "brainprop"),
    (["python", "main.py", "MNIST", "dense", "Greedy"], "main.py"),
    (["python", str(ROOT / "main.py"), "MNIST", "dense", "Greedy"], "main.py"),
    (["python", "-m", "brainprop.runs.cli", "MNIST", "dense", "Greedy"],
     "python -m brainprop.runs.cli"),
    (["brainprop-reproduce", "table3"], "brainprop-reproduce"),
    (["python", "-m", "brainprop.reproduce", "table3"], "python -m brainprop.reproduce"),
], ids=["brainprop", "main.py", "path", "-m", "brainprop-reproduce", "-m reproduce"])
def test_every_error_names_the_command_as_it_was_started(tmp_path, command, name):
    env = installed(tmp_path)
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
        name = name.replace("python", Path(sys.executable).name)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{name}: error: argument ")


INTERRUPT_AFTER_EPOCH_1 = """\
import os, signal
from brainprop.train.training import EpochTimer
ending = EpochTimer.on_epoch_end
def on_epoch_end(self, epoch, logs=None):
    ending(self, epoch, logs)
    os.kill(os.getpid(), signal.SIGINT)
EpochTimer.on_epoch_end = on_epoch_end
"""


@pytest.mark.slow
def test_the_printed_resume_command_works_pasted_in_another_folder(tmp_path):
    """`brainprop ... -s` in a folder, with relative paths and the default output folder,
    Ctrl-C: the command it prints, pasted into a shell in another folder, resumes the run."""
    env = installed(tmp_path)
    console_script(tmp_path / "bin", "brainprop", "brainprop.runs.cli:main",
                   before=INTERRUPT_AFTER_EPOCH_1)
    there = tmp_path / "project"
    write_learnable_mnist(there / "data", n_train=256, n_test=64)
    typed = ["brainprop", "MNIST", "dense", "EBP", "-s", "--data-dir", "data", "--epochs", "2",
             "--batch-size", "32"]
    done = subprocess.run(typed, cwd=there, env=env, capture_output=True, text=True)
    assert done.returncode == 130, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("Interrupted. To continue: brainprop MNIST dense EBP ")
    printed = last.removeprefix("Interrupted. To continue: ")
    interrupted = json.loads((there / "MNIST_dense_EBP_seed1_summary.json").read_text())
    assert interrupted["command"] == shlex.join(typed) and interrupted["interrupted"]

    console_script(tmp_path / "bin", "brainprop", "brainprop.runs.cli:main")  # no Ctrl-C now
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run(["bash", "-c", printed], cwd=elsewhere, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming MNIST_dense_EBP_seed1 from epoch 2 of 2" in resumed.stdout
    assert not list(elsewhere.iterdir())
    summary = json.loads((there / "MNIST_dense_EBP_seed1_summary.json").read_text())
    assert summary["resumed"] and not summary["interrupted"] and summary["epochs_run"] == 2
    assert summary["command"] == printed
