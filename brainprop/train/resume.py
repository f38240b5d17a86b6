"""Long runs survive interruption: stop cleanly on a signal, resume from a backup.

Ctrl-C (SIGINT) or SIGTERM sets a flag; at the end of the current batch (of
the current compiled call of several batches) the run stops with
`TrainingInterrupted`, discarding the unfinished epoch.  Every completed epoch
has been backed up by `RunBackup` into one file, written atomically (by a
thread, while the next epoch trains): every variable of the model (weights,
BatchNorm statistics, the state of every random seed generator: BrainProp's
action selection, dropout), every variable of the optimizer, and what Keras' callbacks reset in `fit`: the
early-stopping counter and best, the best validation accuracy seen by the
checkpoint, the history and the epoch times.  With the data shuffle picked by
the epoch number, a resumed run continues exactly where the uninterrupted one
would have been.  Public Keras API is used (`model.variables`, `optimizer.variables`,
`Variable.assign`, `fit(initial_epoch=...)`), except the callbacks' undocumented
counters, read and restored through `brainprop.utils.compat`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from brainprop.utils import compat
from brainprop.utils.atomic import write_atomically
from brainprop.utils.errors import BrainPropError, one_line
from brainprop.utils.signals import SignalFlag, stop_signals


class TrainingInterrupted(Exception):
    """Training stopped on a signal; the last completed epoch is backed up."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[SignalFlag]:
    """Record SIGINT/SIGTERM in a flag instead of dying; a second one stops at once.

    Inside a command that already notes stop signals (`brainprop.utils.signals`), the
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


BACKUP_FILE = "backup.npz"
# The backup of the epoch before, kept until the next one is whole: a backup that
# cannot be read (a damaged disk, a copy cut short) costs one epoch, not the run.
PREVIOUS_FILE = "backup.previous.npz"


class RunBackup(keras.callbacks.Callback):
    """Backs up the whole state of training after every epoch; restores it in `fit`.

    `watch` names the callbacks whose state it saves and restores (early stopping,
    the best-weights checkpoint, the epoch timer).  It saves them at its own epoch
    end, so it comes after them in the callback list (`brainprop.train.training`
    builds that list, in one place); it restores them at the start of `fit` and again
    as the first epoch begins, after every callback's own reset.  Pass
    `completed_epochs()` to `fit` as `initial_epoch`.  `history` holds every
    completed epoch's logs, those of earlier sessions of the run included.

    The state is copied at the end of the epoch and written to disk by a thread
    while the next epoch trains; `wait()` returns once it is whole on disk (and
    raises what the writing raised).  Each backup waits for the one before, and
    `on_train_end` for the last; call `wait()` yourself when `fit` raises.
    """

    def __init__(self, backup_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(backup_dir) / BACKUP_FILE
        self.early_stopping: keras.callbacks.EarlyStopping | None = None
        self.checkpoint: keras.callbacks.ModelCheckpoint | None = None
        self.timer = None
        self.history: dict[str, list] = {}
        self._restored: dict[str, Any] | None = None
        self._writing: threading.Thread | None = None
        self._failure: BaseException | None = None
        if not self.path.exists() and (Path(backup_dir) / "run_state.json").exists():
            raise BrainPropError(
                f"{backup_dir} was written by an earlier version of this project, which "
                "cannot be resumed: start the run again without --resume"
            )

    def watch(self, early_stopping: keras.callbacks.EarlyStopping,
              checkpoint: keras.callbacks.ModelCheckpoint | None, timer) -> None:
        """The callbacks whose state is backed up with the model's: `timer` keeps the
        epochs' seconds in a list `seconds`; `checkpoint` may be None."""
        self.early_stopping, self.checkpoint, self.timer = early_stopping, checkpoint, timer

    def _source(self) -> Path | None:
        """The newest backup that can be read; damaged ones are set aside (renamed)."""
        if not hasattr(self, "_found"):
            self._found = self._find_source()
        return self._found

    def _find_source(self) -> Path | None:
        damaged = []
        for path in (self.path, self.path.with_name(PREVIOUS_FILE)):
            if not path.exists():
                continue
            try:
                with np.load(path, allow_pickle=False) as stored:
                    _check_state(json.loads(str(stored["state"])))
                    for name in stored.files:  # every array whole (CRC checked)
                        stored[name]
            except Exception as error:  # truncated, not a zip, a bad CRC, no state
                damaged.append((path, f"{type(error).__name__}: {error}"))
                continue
            for bad, reason in damaged:
                print(f"The backup {bad} cannot be read ({one_line(reason, 120)}); "
                      f"continuing from {path.name}", flush=True)
                os.replace(bad, bad.with_name(bad.name + ".damaged"))
            return path
        if damaged and len(damaged) == 2:
            raise BrainPropError(
                f"no backup in {self.path.parent} can be read ({one_line(damaged[0][1], 120)}); "
                f"delete that folder to start the run over without --resume"
            )
        if damaged:  # the first backup, damaged: nothing is lost by starting over
            bad = damaged[0][0]
            print(f"The first backup {bad} cannot be read; starting the run over", flush=True)
            os.replace(bad, bad.with_name(bad.name + ".damaged"))
        return None

    def _state(self) -> dict[str, Any] | None:
        source = self._source()
        if source is None:
            return None
        with np.load(source, allow_pickle=False) as stored:
            return json.loads(str(stored["state"]))

    def completed_epochs(self) -> int:
        """Epochs completed by earlier sessions of this run (0 for a new run)."""
        state = self._state()
        return 0 if state is None else int(state["epoch"])

    def finished(self) -> bool:
        """Whether the run had stopped (early stopping, a NaN loss) when backed up last:
        only its outputs remain to be written."""
        state = self._state()
        return bool(state and state.get("finished"))

    def on_train_begin(self, logs=None):
        source = self._source()
        if source is None:
            return
        state = self._state()
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        with np.load(source, allow_pickle=False) as stored:
            groups = [(variables, _stored_values(variables, stored, group, source))
                      for variables, group in ((self.model.variables, "model"),
                                               (optimizer.variables, "optimizer"))]
        for variables, values in groups:  # only once every value fits
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        self.history = state["history"]
        self._restore_callbacks(state)
        self._restored = state

    def on_epoch_begin(self, epoch, logs=None):
        # Again once every callback's on_train_begin has run: early stopping resets
        # its counters there, wherever it stands in the list.
        if self._restored is not None:
            self._restore_callbacks(self._restored)
            self._restored = None

    def _restore_callbacks(self, state: dict[str, Any]) -> None:
        self.timer.seconds[:] = state["epoch_seconds"]
        compat.restore_early_stopping(self.early_stopping, state["early_stopping"])
        if self.checkpoint is not None:
            compat.restore_checkpoint_best(self.checkpoint, state["checkpoint_best"])

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(as_python(value))
        stopping = compat.early_stopping_state(self.early_stopping)
        state = {
            "epoch": epoch + 1,
            "history": self.history,
            "epoch_seconds": self.timer.seconds,
            "early_stopping": {**stopping, "best": as_python(stopping["best"])},
            "checkpoint_best": (as_python(compat.checkpoint_best(self.checkpoint))
                                if self.checkpoint else None),
            # Set by early stopping or a NaN loss in this epoch (the callbacks before).
            "finished": bool(self.model.stop_training),
        }
        state = np.str_(json.dumps(state))  # as it is now: the lists grow
        arrays = {
            **_arrays(self.model.variables, "model"),
            **_arrays(self.model.optimizer.variables, "optimizer"),
        }
        self.wait()
        self._writing = threading.Thread(
            target=self._write, args=(state, arrays), name="backup", daemon=False)
        self._writing.start()

    def on_train_end(self, logs=None):
        self.wait()

    def wait(self) -> None:
        """Return once the last backup is whole on disk; raise what writing it raised."""
        if self._writing is not None:
            self._writing.join()
            self._writing = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _write(self, state: np.str_, arrays: dict[str, np.ndarray]) -> None:
        def write(partial: Path) -> None:
            with open(partial, "wb") as f:
                np.savez(f, state=state, **arrays)

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # kept until the new one is whole
                os.replace(self.path, self.path.with_name(PREVIOUS_FILE))
            write_atomically(self.path, write)
        except BaseException as error:  # raised in the training thread, by wait()
            self._failure = error


def _arrays(variables, group: str) -> dict[str, np.ndarray]:
    """The variables' values, copied (`convert_to_numpy` makes a NumPy array of its own on
    every backend): training goes on changing the variables while these are written."""
    return {f"{group}_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}


def _stored_values(variables, stored, group: str, path: Path) -> list[np.ndarray]:
    """The stored value of each variable, in order, once each is a number array of its
    variable's shape."""
    names = {name for name in stored.files if name.startswith(f"{group}_")}
    values = [stored[f"{group}_{i}"] for i in range(len(names)) if f"{group}_{i}" in names]
    if (len(values) != len(names)
            or [tuple(a.shape) for a in values] != [tuple(v.shape) for v in variables]
            or any(a.dtype.kind not in "biuf" for a in values)):
        raise BrainPropError(
            f"the backup {path} does not fit this run ({group} variables differ): resume "
            "with the dataset, architecture and options of the interrupted run"
        )
    return values


def _check_state(state: object) -> None:
    """ValueError unless `state` holds what `RunBackup.on_epoch_end` writes, each of its
    type: the epochs completed, the history and epoch times, the callbacks' state."""
    def number(value, none=False):
        return (value is None and none) or type(value) in (int, float)

    if not isinstance(state, dict):
        raise ValueError("the state is not a mapping")
    epoch, history, seconds = state.get("epoch"), state.get("history"), state.get("epoch_seconds")
    if type(epoch) is not int or epoch < 0:
        raise ValueError(f"epoch is {one_line(repr(epoch))}, not a number of epochs")
    if not (isinstance(history, dict) and all(isinstance(v, list) for v in history.values())):
        raise ValueError("the history is not a mapping of lists")
    if not (isinstance(seconds, list) and all(map(number, seconds))):
        raise ValueError("epoch_seconds is not a list of numbers")
    stopping = state.get("early_stopping")
    if not (isinstance(stopping, dict) and set(stopping) == {"wait", "best", "best_epoch",
                                                             "stopped_epoch"}
            and number(stopping["best"], none=True)
            and all(type(stopping[k]) is int for k in ("wait", "best_epoch", "stopped_epoch"))):
        raise ValueError("early_stopping is not the early-stopping state")
    if "checkpoint_best" not in state or not number(state["checkpoint_best"], none=True):
        raise ValueError("checkpoint_best is not a number")
    if type(state.get("finished", False)) is not bool:
        raise ValueError("finished is not true or false")


def as_python(value) -> float | list | None:
    """A log value as Python floats: a float, a list for vector metrics, None stays None."""
    if value is None:
        return None
    return np.asarray(value, dtype=float).tolist()
