"""Interrupted runs stop cleanly and resume exactly where they would have been."""

import csv
import json
import os
import pickle
import signal

import numpy as np
import pytest
from test_cli import write_learnable_mnist

from brainprop.runs.cli import main
from brainprop.train.training import EpochTimer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_learnable_mnist(
        tmp_path_factory.mktemp("data"), n_train=320, n_test=160, seed=3
    )


def command(data_dir, out, *extra):
    return ["MNIST", "conv", "BrainProp", "-s", "--data-dir", str(data_dir), "--output-dir",
            str(out), "--epochs", "7", "--patience", "2", "--batch-size", "32", *extra]


def run_summary(out):
    summaries = [p for p in out.glob("*_summary.json")]
    assert len(summaries) == 1, summaries
    summary = json.loads(summaries[0].read_text())
    with open(out / summary["files"]["history"], "rb") as f:
        return summary, pickle.load(f)[2]


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert main(command(data_dir, out)) == 0
    return run_summary(out)


def send_signal_at(monkeypatch, signal_number, epoch, batch=None):
    """Deliver a real signal to this process at a chosen point of training."""
    if batch is None:
        original = EpochTimer.on_epoch_end

        def on_epoch_end(self, e, logs=None):
            original(self, e, logs)
            if e == epoch:
                os.kill(os.getpid(), signal_number)

        monkeypatch.setattr(EpochTimer, "on_epoch_end", on_epoch_end)
        return
    state = {"epoch": -1}
    original = EpochTimer.on_epoch_begin

    def on_epoch_begin(self, e, logs=None):
        original(self, e, logs)
        state["epoch"] = e

    def on_train_batch_end(self, b, logs=None):
        # Callbacks see the last batch of each compiled call of several batches.
        if state["epoch"] == epoch and b >= batch and not state.get("sent"):
            state["sent"] = True
            os.kill(os.getpid(), signal_number)

    monkeypatch.setattr(EpochTimer, "on_epoch_begin", on_epoch_begin)
    monkeypatch.setattr(EpochTimer, "on_train_batch_end", on_train_batch_end, raising=False)


@pytest.mark.parametrize(
    "signal_number,exit_code,epoch,batch",
    [(signal.SIGINT, 130, 2, None), (signal.SIGTERM, 143, 3, 4)],
    ids=["sigint-after-epoch-3", "sigterm-inside-epoch-4"],
)
def test_interrupted_then_resumed_run_equals_uninterrupted_run(
    data_dir, tmp_path, monkeypatch, capsys, uninterrupted, signal_number, exit_code, epoch, batch
):
    expected, expected_history = uninterrupted
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal_number, epoch, batch)
        assert main(command(data_dir, tmp_path)) == exit_code

    # What -s promises is there, marked as interrupted, with the epochs completed.
    stopped, stopped_history = run_summary(tmp_path)
    assert stopped["stop_reason"] == "interrupted" and stopped["interrupted"]
    assert stopped["epochs_run"] == epoch + (1 if batch is None else 0)
    assert (tmp_path / stopped["files"]["weights"]).exists()
    assert "--resume" in capsys.readouterr().out.strip().splitlines()[-1]

    assert main(command(data_dir, tmp_path, "--resume")) == 0
    completed = stopped["epochs_run"]
    assert (f"Resuming MNIST_conv_BrainProp_seed1 from epoch {completed + 1} of 7 "
            f"({completed} completed)") in capsys.readouterr().out.splitlines()
    resumed, resumed_history = run_summary(tmp_path)
    assert resumed["resumed"] and not resumed["interrupted"]
    assert resumed["epochs_run"] == expected["epochs_run"]
    assert resumed["best_epoch"] == expected["best_epoch"]
    assert resumed["stop_reason"] == expected["stop_reason"]
    assert set(resumed_history) == set(expected_history)
    for key, values in expected_history.items():
        np.testing.assert_allclose(resumed_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    assert not list(tmp_path.glob(".*.backup"))  # a finished run leaves no backup


EPOCH_STATISTICS = ("--batchnorm-statistics", "epoch")


def test_a_run_with_epoch_statistics_resumes_as_it_would_have_run(
    data_dir, tmp_path, monkeypatch, capsys
):
    whole = tmp_path / "whole"
    assert main(command(data_dir, whole, *EPOCH_STATISTICS)) == 0
    expected, expected_history = run_summary(whole)
    assert expected["hyperparameters"]["batchnorm_statistics"] == "epoch"

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 2)
        assert main(command(data_dir, out, *EPOCH_STATISTICS)) == 130
    # The resume command carries the choice; without it the run is refused in one line.
    assert " ".join(EPOCH_STATISTICS) in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(command(data_dir, out, "--resume")) != 0
    assert "--batchnorm-statistics" in capsys.readouterr().err
    assert main(command(data_dir, out, *EPOCH_STATISTICS, "--resume")) == 0
    resumed, resumed_history = run_summary(out)
    for key in ("epochs_run", "best_epoch", "stop_reason", "best_val_accuracy"):
        assert resumed[key] == expected[key], key
    for key, values in expected_history.items():
        np.testing.assert_allclose(resumed_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)


BFLOAT16 = ("--mixed-precision", "bfloat16")


def test_a_bfloat16_run_resumes_as_it_would_have_run_and_its_weights_load_with_l(
    data_dir, tmp_path, monkeypatch, capsys
):
    whole = tmp_path / "whole"
    assert main(command(data_dir, whole, *BFLOAT16)) == 0
    expected, expected_history = run_summary(whole)
    assert expected["dtype_policy"] == "mixed_bfloat16"
    assert expected["config"]["mixed_precision"] == "bfloat16"

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 2)
        assert main(command(data_dir, out, *BFLOAT16)) == 130
    assert main(command(data_dir, out, *BFLOAT16, "--resume")) == 0
    resumed, resumed_history = run_summary(out)
    assert resumed["resumed"] and resumed["dtype_policy"] == "mixed_bfloat16"
    for key in ("epochs_run", "best_epoch", "stop_reason", "best_val_accuracy"):
        assert resumed[key] == expected[key], key
    assert set(resumed_history) == set(expected_history)
    for key, values in expected_history.items():
        np.testing.assert_allclose(resumed_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)

    # The weights are float32: -l evaluates them under the policy they trained with.
    weights = str(whole / expected["files"]["weights"])
    capsys.readouterr()
    assert main(["MNIST", "conv", "BrainProp", "--data-dir", str(data_dir), "-l", weights,
                 *BFLOAT16]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"Test accuracy: {expected['best_val_accuracy']:.4f}"


@pytest.mark.backend_independent
def test_resume_without_an_interrupted_run_is_refused_in_one_line(data_dir, tmp_path, capsys):
    assert main(command(data_dir, tmp_path, "--resume")) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "no interrupted run" in errors[0]
    assert not list(tmp_path.iterdir())


# Inside epoch 2: a run stopped before its first epoch ends leaves nothing to resume.
INTERRUPT_INSIDE_EPOCH_2 = """\
import os, signal, sys
from brainprop.runs.cli import main
from brainprop.train.training import EpochTimer

def on_train_batch_end(self, batch, logs=None):
    if len(self.seconds) == 1 and batch >= 2:  # epoch 2, end of a compiled call
        os.kill(os.getpid(), signal.SIGINT)

EpochTimer.on_train_batch_end = on_train_batch_end
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_leaves_no_tensorflow_error_at_exit(data_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    # Every TensorFlow log line shown, so that nothing hides the one looked for.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_INSIDE_EPOCH_2, *command(data_dir, tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 130, result.stderr
    assert "Interrupted. To continue:" in result.stdout
    assert "GeneratorDataset" not in result.stderr, result.stderr


def _backed_up_model(tmp_path):
    import keras

    from brainprop.train.resume import RunBackup

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.optimizer.build(model.trainable_variables)
    stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max")
    stopping.set_model(model)
    stopping.on_train_begin()
    backup = RunBackup(tmp_path)
    backup.watch(stopping, None, EpochTimer())
    backup.set_model(model)
    return model, backup


def test_a_backup_holds_the_epochs_end_while_the_next_epoch_changes_the_weights(tmp_path):
    from brainprop.train.resume import BACKUP_FILE

    model, backup = _backed_up_model(tmp_path)
    at_epoch_end = [np.array(v) for v in model.variables]
    backup.on_epoch_end(0, {"loss": 1.0})
    for variable in model.variables:  # the next epoch trains while the backup is written
        variable.assign(variable + 1.0)
    backup.wait()
    with np.load(tmp_path / BACKUP_FILE) as stored:
        assert json.loads(str(stored["state"]))["epoch"] == 1
        for i, value in enumerate(at_epoch_end):
            np.testing.assert_array_equal(stored[f"model_{i}"], value)


def test_a_backup_that_cannot_be_written_fails_the_training_thread(tmp_path, monkeypatch):
    import errno

    from brainprop.train import resume

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    model, backup = _backed_up_model(tmp_path)
    monkeypatch.setattr(resume, "write_atomically", full)
    backup.on_epoch_end(0, {"loss": 1.0})  # written by a thread: no error yet
    with pytest.raises(OSError, match="No space left"):
        backup.wait()
    backup.wait()  # raised once
    backup.on_epoch_end(1, {"loss": 1.0})
    with pytest.raises(OSError, match="No space left"):
        backup.on_epoch_end(2, {"loss": 1.0})  # the next epoch's end reports it at the latest


class Recorder:
    """A callback of someone else's, added to the list: it only watches."""

    def __init__(self):
        import keras

        class Watching(keras.callbacks.Callback):
            def on_epoch_end(inner, epoch, logs=None):
                self.epochs.append(epoch)

        self.epochs = []
        self.callback = Watching()


def test_callbacks_added_before_and_after_leave_resuming_exact(
    data_dir, tmp_path, monkeypatch, capsys, uninterrupted
):
    from brainprop.train import training

    build = training._callbacks
    first, last = Recorder(), Recorder()

    def with_others(*args, **kwargs):
        callbacks = build(*args, **kwargs)
        callbacks.all[:] = [first.callback, *callbacks.all, last.callback]
        return callbacks

    monkeypatch.setattr(training, "_callbacks", with_others)
    expected, expected_history = uninterrupted
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 1)
        assert main(command(data_dir, tmp_path)) == 130
    assert main(command(data_dir, tmp_path, "--resume")) == 0
    resumed, resumed_history = run_summary(tmp_path)
    assert first.epochs == last.epochs == list(range(expected["epochs_run"]))
    assert resumed["best_epoch"] == expected["best_epoch"]
    for key, values in expected_history.items():
        np.testing.assert_allclose(resumed_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_restored_early_stopping_survives_its_own_reset_wherever_it_stands(tmp_path):
    import keras

    from brainprop.train.resume import RunBackup

    model, backup = _backed_up_model(tmp_path)
    backup.early_stopping.wait, backup.early_stopping.best = 2, 0.75
    backup.timer.seconds[:] = [1.5]
    backup.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.75})
    backup.wait()

    stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max")
    stopping.set_model(model)
    restored = RunBackup(tmp_path)
    restored.watch(stopping, None, EpochTimer())
    restored.set_model(model)
    restored.on_train_begin()  # the backup before early stopping in the list:
    stopping.on_train_begin()  # early stopping resets its counters after the restore
    restored.on_epoch_begin(1)
    assert (stopping.wait, stopping.best, restored.timer.seconds) == (2, 0.75, [1.5])


def _rewrite_state(path, **changes):
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    state = json.loads(str(arrays["state"]))
    state.update(changes)
    arrays["state"] = np.str_(json.dumps(state))
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes", [
    {"epoch": "two"}, {"history": [1, 2]}, {"epoch_seconds": ["slow"]},
    {"early_stopping": {"wait": 0, "best": 0.5, "best_epoch": 1, "model": None}},
    {"checkpoint_best": "high"}, {"finished": "yes"},
], ids=["epoch", "history", "epoch_seconds", "early_stopping", "checkpoint_best", "finished"])
def test_a_backup_whose_state_has_the_wrong_types_counts_as_damaged(tmp_path, changes):
    from brainprop.train.resume import BACKUP_FILE, PREVIOUS_FILE, RunBackup
    from brainprop.utils.errors import BrainPropError

    model, backup = _backed_up_model(tmp_path)
    for epoch in range(2):
        backup.on_epoch_end(epoch, {"loss": 1.0})
        backup.wait()
    _rewrite_state(tmp_path / BACKUP_FILE, **changes)
    # The one before it is used, and the damaged one set aside.
    assert RunBackup(tmp_path).completed_epochs() == 1
    assert (tmp_path / f"{BACKUP_FILE}.damaged").exists()
    # Both damaged: one line, and both left where they are.
    (tmp_path / f"{BACKUP_FILE}.damaged").rename(tmp_path / BACKUP_FILE)
    _rewrite_state(tmp_path / PREVIOUS_FILE, **changes)
    with pytest.raises(BrainPropError, match="no backup in .* can be read") as error:
        RunBackup(tmp_path).completed_epochs()
    assert "\n" not in str(error.value)
    assert (tmp_path / BACKUP_FILE).exists() and (tmp_path / PREVIOUS_FILE).exists()


def test_a_backup_with_variables_of_another_type_is_refused_before_any_is_assigned(tmp_path):
    from brainprop.train.resume import BACKUP_FILE, RunBackup
    from brainprop.utils.errors import BrainPropError

    model, backup = _backed_up_model(tmp_path)
    backup.on_epoch_end(0, {"loss": 1.0})
    backup.wait()
    with np.load(tmp_path / BACKUP_FILE) as stored:
        arrays = {name: stored[name] for name in stored.files}
    last = max(name for name in arrays if name.startswith("optimizer_"))
    arrays[last] = np.full(arrays[last].shape, "x")  # text: no variable takes it
    np.savez(tmp_path / BACKUP_FILE, **arrays)
    before = [np.array(v) for v in model.variables]
    for variable in model.variables:
        variable.assign(variable + 1.0)
    changed = [np.array(v) for v in model.variables]
    resumed = RunBackup(tmp_path)
    resumed.watch(backup.early_stopping, None, EpochTimer())
    resumed.set_model(model)
    with pytest.raises(BrainPropError, match="does not fit this run"):
        resumed.on_train_begin()
    for variable, value in zip(model.variables, changed, strict=True):  # the model's variables untouched
        np.testing.assert_array_equal(np.array(variable), value)
    assert not all(np.array_equal(a, b) for a, b in zip(before, changed, strict=True))


@pytest.mark.parametrize("kind", ["kolen-pollack", "direct"])
def test_a_run_with_feedback_weights_resumes_as_it_would_have_run(
    data_dir, tmp_path, monkeypatch, kind
):
    feedback = ("--feedback", kind)
    whole = tmp_path / "whole"
    assert main(command(data_dir, whole, *feedback)) == 0
    expected, expected_history = run_summary(whole)
    assert expected["config"]["feedback"] == kind

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        send_signal_at(patch, signal.SIGINT, 1)
        assert main(command(data_dir, out, *feedback)) == 130
    assert main(command(data_dir, out, "--resume")) == 2  # not with the paper's feedback
    assert main(command(data_dir, out, *feedback, "--resume")) == 0
    resumed, resumed_history = run_summary(out)
    assert resumed["resumed"]
    for key in ("epochs_run", "best_epoch", "stop_reason", "best_val_accuracy"):
        assert resumed[key] == expected[key], key
    assert set(resumed_history) == set(expected_history)
    for key, values in expected_history.items():
        np.testing.assert_allclose(resumed_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    # The angles with backpropagation, every epoch, the same in the history and the log.
    angles = [key for key in expected_history if key.startswith(("weight_angle/", "update_angle/"))]
    assert len(angles) == (4 if kind == "direct" else 8)  # conv: 4 weight layers
    assert len(expected_history[angles[0]]) == expected["epochs_run"]
    expected_log, resumed_log = (angle_columns(folder, summary, angles)
                                 for folder, summary in ((whole, expected), (out, resumed)))
    np.testing.assert_allclose(resumed_log, expected_log, rtol=1e-5, atol=1e-6)


def angle_columns(out, summary, keys):
    """The CSV log's columns `keys`, epoch by epoch."""
    with open(out / summary["files"]["log"], newline="") as f:
        return [[float(row[key]) for key in keys] for row in csv.DictReader(f)]
