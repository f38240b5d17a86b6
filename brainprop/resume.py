"""Long runs survive interruption: stop cleanly on a signal, resume from a backup.

Ctrl-C (SIGINT) or SIGTERM sets a flag; at the end of the current batch the
run stops with `TrainingInterrupted`, discarding the unfinished epoch.  Every
completed epoch has been backed up by `RunBackup`, Keras' BackupAndRestore
plus what it does not keep: the early-stopping counter and best, the best
validation accuracy seen by the checkpoint, the history, the epoch times, the
position of the data shuffle and the state of every random seed generator
(BrainProp's action selection, dropout).  A resumed run therefore continues
exactly where the uninterrupted one would have been.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from brainprop.outputs import write_atomically
from brainprop.signals import SignalFlag, stop_signals

STATE_FILE = "run_state.json"
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(Exception):
    """Training stopped on a signal; the last completed epoch is backed up."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[SignalFlag]:
    """Record SIGINT/SIGTERM in a flag instead of dying; a second one stops at once.

    Inside a command that already notes stop signals (`brainprop.signals`), the
    same flag: a Ctrl-C that came before training stops it at the first batch.
    """
    with stop_signals("stopping after this batch") as flag:
        yield flag


class StopOnSignal(keras.callbacks.Callback):
    """Raises `TrainingInterrupted` at the first batch end after a stop signal."""

    def __init__(self, flag: SignalFlag):
        super().__init__()
        self.flag = flag

    def _check(self, *args, **kwargs) -> None:
        if self.flag.signal_number is not None:
            raise TrainingInterrupted(self.flag.signal_number)

    on_train_batch_end = _check
    on_test_batch_end = _check
    on_epoch_end = _check


def _seed_states(model: keras.Model) -> dict[str, Any]:
    return {
        v.path: keras.ops.convert_to_numpy(v.value).tolist()
        for v in model.non_trainable_variables
        if "seed_generator_state" in v.path
    }


class RunBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that also keeps the state Keras' callbacks reset in `fit`.

    Put it last in the callback list, so that the callbacks whose state it
    saves have already seen the epoch.  `history` holds every completed
    epoch's logs, those of earlier sessions of the run included.
    """

    def __init__(self, backup_dir, early_stopping, checkpoint, timer, train_batches):
        super().__init__(backup_dir, double_checkpoint=True)
        self.state_path = Path(backup_dir) / STATE_FILE
        self.early_stopping = early_stopping
        self.checkpoint = checkpoint
        self.timer = timer
        self.train_batches = train_batches
        self.history: dict[str, list] = {}

    def completed_epochs(self) -> int:
        """Epochs completed by earlier sessions of this run (0 for a new run)."""
        if not self.state_path.exists():
            return 0
        return int(json.loads(self.state_path.read_text())["epoch"])

    def on_train_begin(self, logs=None):
        self._keep_backup_consistent()
        super().on_train_begin(logs)
        if not self.state_path.exists():
            return
        state = json.loads(self.state_path.read_text())
        self.history = state["history"]
        self.timer.seconds[:] = state["epoch_seconds"]
        for name, value in state["early_stopping"].items():
            setattr(self.early_stopping, name, value)
        if self.checkpoint is not None:
            self.checkpoint.best = state["checkpoint_best"]
        seeds = _seed_states(self.model)
        for variable in self.model.non_trainable_variables:
            if variable.path in seeds:
                variable.assign(np.asarray(state["seed_states"][variable.path], dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(plain(value))
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        super()._save_model()
        state = {
            "epoch": self._current_epoch,
            "history": self.history,
            "epoch_seconds": self.timer.seconds,
            "early_stopping": {
                "wait": self.early_stopping.wait,
                "best": plain(self.early_stopping.best),
                "best_epoch": self.early_stopping.best_epoch,
                "stopped_epoch": self.early_stopping.stopped_epoch,
            },
            "checkpoint_best": plain(self.checkpoint.best) if self.checkpoint else None,
            "seed_states": _seed_states(self.model),
        }
        write_atomically(self.state_path, lambda partial: partial.write_text(json.dumps(state)))

    def _keep_backup_consistent(self) -> None:
        # A crash between Keras' weight backup and our state file leaves the
        # weights one epoch ahead of the state: go back to Keras' previous pair.
        metadata = Path(self._training_metadata_path)
        if not (metadata.exists() and self.state_path.exists()):
            return
        if json.loads(metadata.read_text())["epoch"] == self.completed_epochs():
            return
        for current in (self._weights_path, str(metadata)):
            if Path(f"{current}.bkp").exists():
                shutil.copy(f"{current}.bkp", current)


def plain(value) -> float | list | None:
    """A log value as Python floats: a float, a list for vector metrics, None stays None."""
    if value is None:
        return None
    return np.asarray(value, dtype=float).tolist()
