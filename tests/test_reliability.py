"""Unlucky moments: a full disk, a crash at the wrong time, two processes on one run."""

import errno
import json
import subprocess

import keras
import pytest

from brainprop.cli import main
from filesystems import small_filesystem
from test_cli import write_learnable_mnist


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


def test_disk_full_during_training_ends_in_one_line_and_the_run_resumes(
    data_dir, tmp_path, capsys
):
    # One weight file of the dense network is 12.8 MB: 20 MB hold the best epoch's
    # weights but not the backup beside them.
    with small_filesystem(tmp_path / "disk", "20m") as disk:
        assert main(command(data_dir, disk)) == 2
        line = one_error(capsys)
        assert "No space left on device" in line and "--resume" in line
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
    assert "No space left on device while writing" in line and "_log.csv" in line
    assert "--resume" in line
