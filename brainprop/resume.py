"""Long runs survive interruption: stop cleanly on a signal, resume from a backup.

Ctrl-C (SIGINT) or SIGTERM sets a flag; at the end of the current batch (of
the current compiled call of several batches) the run stops with `TrainingInterrupted`, discarding the unfinished epoch.  Every
completed epoch has been backed up by `RunBackup` into one file, written
atomically: every variable of the model (weights, BatchNorm statistics, the
state of every random seed generator: BrainProp's action selection, dropout),
every variable of the optimizer, and what Keras' callbacks reset in `fit`: the
early-stopping counter and best, the best validation accuracy seen by the
checkpoint, the history and the epoch times.  With the data shuffle picked by
the epoch number, a resumed run continues exactly where the uninterrupted one
would have been.  Only public Keras API is used (`model.variables`,
`optimizer.variables`, `Variable.assign`, `fit(initial_epoch=...)`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from brainprop.atomic import write_atomically
from brainprop.errors import BrainPropError

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(Exception):
    """Training stopped on a signal; the last completed epoch is backed up."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class SignalFlag:
    """Which stop signal arrived, if any."""

    def __init__(self):
        self.signal_number: int | None = None


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[SignalFlag]:
    """Record SIGINT/SIGTERM in a flag instead of dying; a second one stops at once."""
    flag = SignalFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be set from the main thread
        return

    def handle(signal_number, frame):
        if flag.signal_number is not None:
            raise KeyboardInterrupt
        flag.signal_number = signal_number
        print(
            f"\n{signal.Signals(signal_number).name}: stopping after this batch "
            "(send it again to stop at once)",
            flush=True,
        )

    previous = {s: signal.signal(s, handle) for s in SIGNAL_EXIT_CODES}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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


BACKUP_FILE = "backup.npz"


class RunBackup(keras.callbacks.Callback):
    """Backs up the whole state of training after every epoch; restores it in `fit`.

    Put it last in the callback list, so that the callbacks whose state it
    saves have already seen the epoch, and pass `completed_epochs()` to `fit`
    as `initial_epoch`.  `history` holds every completed epoch's logs, those of
    earlier sessions of the run included.
    """

    def __init__(self, backup_dir, early_stopping, checkpoint, timer):
        super().__init__()
        self.path = Path(backup_dir) / BACKUP_FILE
        self.early_stopping = early_stopping
        self.checkpoint = checkpoint
        self.timer = timer
        self.history: dict[str, list] = {}
        if not self.path.exists() and (Path(backup_dir) / "run_state.json").exists():
            raise BrainPropError(
                f"{backup_dir} was written by an earlier version of this project, which "
                "cannot be resumed: start the run again without --resume"
            )

    def _state(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        with np.load(self.path, allow_pickle=False) as stored:
            return json.loads(str(stored["state"]))

    def completed_epochs(self) -> int:
        """Epochs completed by earlier sessions of this run (0 for a new run)."""
        state = self._state()
        return 0 if state is None else int(state["epoch"])

    def on_train_begin(self, logs=None):
        state = self._state()
        if state is None:
            return
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        with np.load(self.path, allow_pickle=False) as stored:
            _assign(self.model.variables, stored, "model", self.path)
            _assign(optimizer.variables, stored, "optimizer", self.path)
        self.history = state["history"]
        self.timer.seconds[:] = state["epoch_seconds"]
        for name, value in state["early_stopping"].items():
            setattr(self.early_stopping, name, value)
        if self.checkpoint is not None:
            self.checkpoint.best = state["checkpoint_best"]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(as_python(value))
        state = {
            "epoch": epoch + 1,
            "history": self.history,
            "epoch_seconds": self.timer.seconds,
            "early_stopping": {
                "wait": self.early_stopping.wait,
                "best": as_python(self.early_stopping.best),
                "best_epoch": self.early_stopping.best_epoch,
                "stopped_epoch": self.early_stopping.stopped_epoch,
            },
            "checkpoint_best": as_python(self.checkpoint.best) if self.checkpoint else None,
        }
        arrays = {
            **_arrays(self.model.variables, "model"),
            **_arrays(self.model.optimizer.variables, "optimizer"),
        }

        def write(partial: Path) -> None:
            with open(partial, "wb") as f:
                np.savez(f, state=np.str_(json.dumps(state)), **arrays)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, write)


def _arrays(variables, group: str) -> dict[str, np.ndarray]:
    return {f"{group}_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}


def _assign(variables, stored, group: str, path: Path) -> None:
    """Give each variable its stored value, in order, after checking every shape."""
    names = [name for name in stored.files if name.startswith(f"{group}_")]
    values = [stored[f"{group}_{i}"] for i in range(len(names))]
    expected = [tuple(v.shape) for v in variables]
    if [tuple(a.shape) for a in values] != expected:
        raise BrainPropError(
            f"the backup {path} does not fit this run ({group} variables differ): resume "
            "with the dataset, architecture and options of the interrupted run"
        )
    for variable, value in zip(variables, values):
        variable.assign(value)


def as_python(value) -> float | list | None:
    """A log value as Python floats: a float, a list for vector metrics, None stays None."""
    if value is None:
        return None
    return np.asarray(value, dtype=float).tolist()
