"""Training: Keras' `fit` with the release's stopping rules and schedule.

Everything here is stock Keras: LearningRateScheduler for the halving
schedule, EarlyStopping on validation accuracy, TerminateOnNaN, and
ModelCheckpoint for the weights of the best validation epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import h5py
import keras

from brainprop.data.datasets import Dataset
from brainprop.data.pipeline import ImageBatches, fit_input
from brainprop.model.alignment import ALIGNMENT_IMAGES, AlignmentLog
from brainprop.model.pathway import has_feedback, layers_of
from brainprop.train.console import (
    ChanceHint,
    CSVLog,
    EpochLine,
    TensorBoardLog,
    default_verbosity,
)
from brainprop.train.resume import (
    RunBackup,
    StopOnSignal,
    TrainingInterrupted,
    as_python,
    catch_stop_signals,
)
from brainprop.train.schedule import learning_rate_at
from brainprop.train.trainingconfig import TrainingConfig
from brainprop.utils.atomic import write_atomically
from brainprop.utils.backend import import_tensorflow
from brainprop.utils.errors import BrainPropError, one_line


@dataclasses.dataclass
class TrainingResult:
    history: dict[str, list]  # per epoch: a float, or a list of floats for class_accuracy
    epoch_seconds: list[float]
    best_epoch: int  # 1-based; 0 when no epoch finished
    best_val_accuracy: float
    stop_reason: str  # "early_stopping", "max_epochs", "nan_loss" or "interrupted"
    interrupted_by: int | None = None  # the signal that stopped the run


class DiscardDivergedEpoch(keras.callbacks.Callback):
    """An epoch whose weights diverged has no meaningful validation accuracy.

    The training loss is measured before the epoch's last update, so the
    validation loss, computed with the final weights, is checked too.  Runs
    before EarlyStopping and ModelCheckpoint, so that weights full of NaN
    never count as the best and the best weights so far are kept.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        losses = (logs.get("loss", 0.0), logs.get("val_loss", 0.0))
        if not all(math.isfinite(float(loss)) for loss in losses):
            logs["val_accuracy"] = float("nan")
            self.model.stop_training = True


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of each epoch, validation included, and
    logs them as `epoch_seconds` so that they are printed with each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.seconds.append(seconds)
        if logs is not None:
            # Keras' progress line and the CSV log show every entry of `logs`.
            logs["epoch_seconds"] = seconds


@dataclasses.dataclass(frozen=True)
class TrainingFiles:
    """Where training writes; each None: not written.

    `best_weights`: the weights of the best validation epoch.  `csv_log`: one row per
    epoch.  `backup_dir`: every completed epoch is backed up there, and a run found there
    is continued from its last completed epoch; the caller removes the folder once the
    run's outputs are written, so that a run killed while writing them can still be
    resumed (it trains no further epoch).  `tensorboard_dir`: every epoch's numbers, for
    TensorBoard.
    """

    best_weights: str | os.PathLike | None = None
    csv_log: str | os.PathLike | None = None
    backup_dir: str | os.PathLike | None = None
    tensorboard_dir: str | os.PathLike | None = None


def train(
    model: keras.Model,
    data: Dataset,
    config: TrainingConfig,
    files: TrainingFiles | None = None,
    verbose: int | None = None,
    chance_hint_classes: int | None = None,
) -> TrainingResult:
    """Train `model` (compiled) on `data`, validating on `data.validation` each epoch,
    writing what `files` names.

    Stops when validation accuracy has not improved by `min_delta` for
    `patience` epochs, after `epochs` epochs, on a NaN loss, or on SIGINT or
    SIGTERM (then `interrupted_by` names the signal).

    `verbose` is Keras' (0 silent, 1 a progress bar, 2 one line per epoch);
    None picks 1 on a terminal and 2 otherwise.  With `chance_hint_classes`
    (the number of classes), a validation accuracy at chance in the first
    epochs is explained once (the plateau BrainProp starts with).
    With `config.batchnorm_statistics` "epoch", the BatchNormalization layers' momentum
    follows the epoch's length (`set_batchnorm_momentum`); the weights saved for the best
    epoch hold the statistics it was validated with.  A model with feedback weights
    (any kind but `symmetric`) logs its angles with backpropagation every epoch
    (`brainprop.model.alignment`), on the first training images.
    """
    files = files or TrainingFiles()
    verbose = default_verbosity() if verbose is None else verbose
    with contextlib.ExitStack() as stack:
        # Where the best weights and the log grow until training ends: the backup
        # folder, so that a resumed run carries on with them, or a scratch folder.
        work = Path(files.backup_dir) if files.backup_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="brainprop-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        working = {"weights": work / "best.weights.h5", "log": work / "log.csv"}
        train_batches = ImageBatches(
            data.x_train, data.y_train, config.batch_size, shuffle=True, seed=config.seed
        )
        val_batches = ImageBatches(*data.validation, config.batch_size)
        momentum = config.batchnorm_momentum(len(train_batches))
        if momentum is not None:
            set_batchnorm_momentum(model, momentum)

        backup, completed, epochs = _resume_point(
            work if files.backup_dir is not None else None, config, train_batches)
        if files.csv_log is not None:
            _keep_completed_rows(working["log"], completed)
        reporting = _Reporting(verbose, chance_hint_classes, _alignment(model, data, config))
        callbacks = _callbacks(config, working, files, backup, reporting)
        interrupted_by = _fit(model, (train_batches, val_batches), callbacks,
                              range(completed, epochs), verbose)
        _publish({working["weights"]: files.best_weights, working["log"]: files.csv_log})
    logged = backup.history if backup is not None else model.history.history
    return _result(logged, callbacks, interrupted_by)


def _alignment(model: keras.Model, data: Dataset, config: TrainingConfig) -> AlignmentLog | None:
    """The angles' callback of a model with feedback weights, measuring on the first
    images of the training set, at most a batch of them (and `ALIGNMENT_IMAGES`); None
    for any other model."""
    if not has_feedback(model):
        return None
    count = min(config.batch_size, ALIGNMENT_IMAGES, len(data.y_train))
    return AlignmentLog(*ImageBatches(data.x_train, data.y_train, count)[0])


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    """Every BatchNormalization layer of `model`, nested models' included, moves its
    moving statistics by `momentum` (the fraction of their old value each step keeps).

    A model that has trained already makes its training step again: the compiled step
    reads the momentum when it is made.
    """
    for layer in layers_of(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    if model.train_function is not None:
        model.make_train_function(force=True)


def _resume_point(backup_dir: Path | None, config: TrainingConfig,
                  train_batches: ImageBatches) -> tuple[RunBackup | None, int, int]:
    """The backup of the run (None without a backup folder), the epochs it completed,
    and the epoch to train until; the batches continue the shuffle from there."""
    if backup_dir is None:
        return None, 0, config.epochs
    backup = RunBackup(backup_dir)
    completed = backup.completed_epochs()
    # Stopped before its outputs were written: no more epochs.
    epochs = completed if backup.finished() else config.epochs
    # The data shuffle of epoch k depends on k alone: continue the sequence.
    train_batches.epoch = completed
    return backup, completed, epochs


@dataclasses.dataclass(frozen=True)
class _Reporting:
    """What training reports each epoch besides the callbacks' files."""

    verbose: int  # Keras': 0 silent, 1 a progress bar, 2 a line per epoch
    chance_hint_classes: int | None = None  # explain validation at chance early on
    alignment: AlignmentLog | None = None  # the angles with backpropagation, into the logs


@dataclasses.dataclass
class _Callbacks:
    """The callbacks of one `fit`, and those whose state training reads afterwards."""

    timer: EpochTimer
    early_stopping: keras.callbacks.EarlyStopping
    checkpoint: keras.callbacks.ModelCheckpoint | None
    backup: RunBackup | None
    all: list[keras.callbacks.Callback]


def _callbacks(config: TrainingConfig, working: dict[str, Path], files: TrainingFiles,
               backup: RunBackup | None, reporting: _Reporting) -> _Callbacks:
    """Every callback of the run, in the order they must see each epoch's end; those
    that write a file only where `files` names one (into `working`, until published).

    * `DiscardDivergedEpoch` before early stopping and the checkpoint: weights full of
      NaN never count as the best.
    * The timer before the CSV log and the epoch line: they show its seconds.
    * The angles (`reporting.alignment`) after the timer, whose seconds they do not
      count, and before the CSV log, the backup and TensorBoard, which keep them.
    * The backup after early stopping, the timer, the checkpoint and the CSV log: it
      saves their state as the epoch left it, and the log never lacks a row the backup
      counts (a crash between the two leaves a row more, which a resumed run drops).
    * `StopOnSignal` (added by `fit`) after the backup: a signal at an epoch's end
      stops once the epoch is backed up.
    """
    timer = EpochTimer()
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_accuracy",
        mode="max",
        min_delta=config.min_delta,
        patience=config.patience,
    )
    checkpoint = None
    if files.best_weights is not None:
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(working["weights"]),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            # Not None: Keras would save a first epoch whose accuracy is NaN.
            initial_value_threshold=-math.inf,
        )
    callbacks = [
        keras.callbacks.LearningRateScheduler(
            lambda epoch: learning_rate_at(epoch, config.learning_rate)
        ),
        keras.callbacks.TerminateOnNaN(),
        DiscardDivergedEpoch(),
        early_stopping,
        timer,
        *([checkpoint] if checkpoint is not None else []),
        *([reporting.alignment] if reporting.alignment is not None else []),
        *([CSVLog(str(working["log"]), append=True)] if files.csv_log is not None else []),
    ]
    if backup is not None:
        backup.watch(early_stopping, checkpoint, timer)
        callbacks.append(backup)
    if reporting.verbose == 2:  # after the timer: the line shows the epoch's seconds
        callbacks.append(EpochLine())
    if reporting.verbose and reporting.chance_hint_classes:
        callbacks.append(ChanceHint(reporting.chance_hint_classes))
    if files.tensorboard_dir is not None:
        import_tensorflow()  # quietly, before the callback does
        callbacks.append(TensorBoardLog(files.tensorboard_dir))
    return _Callbacks(timer, early_stopping, checkpoint, backup, callbacks)


def _fit(model, batches: tuple[ImageBatches, ImageBatches], callbacks: _Callbacks,
         epochs: range, verbose: int) -> int | None:
    """Keras' fit of the `epochs` left (0-based), on (training, validation) `batches`:
    the signal that interrupted it, or None.  A write that fails (a full disk) ends in
    a one-line BrainPropError."""
    train_batches, val_batches = batches
    backup = callbacks.backup
    with catch_stop_signals() as flag:
        try:
            try:
                model.fit(
                    fit_input(train_batches),
                    validation_data=fit_input(val_batches),
                    epochs=epochs.stop,
                    initial_epoch=epochs.start,
                    callbacks=[*callbacks.all, StopOnSignal(flag)],
                    shuffle=False,  # ImageBatches shuffles, reproducibly per (seed, epoch)
                    verbose=1 if verbose == 1 else 0,  # 2: EpochLine, one plain line
                )
            finally:  # however fit ended, the last completed epoch's backup is whole
                if backup is not None:
                    backup.wait()
        except TrainingInterrupted as stop:
            interrupted_by = stop.signal_number
        except KeyboardInterrupt:  # a second signal: stop at once
            interrupted_by = flag.signal_number or signal.SIGINT
        except OSError as error:  # a full disk, a folder gone read-only
            reason = _write_failure(error)
            error = None  # frees the frames that hold the file being written
            _close_failed_files()
            then = ("continue with the same command and --resume" if backup is not None
                    else "run again")
            raise BrainPropError(
                f"training stopped: {reason}; make room or fix the folder, then {then}"
            ) from None
        else:
            return None
    # The interrupted fit's frames, and with them its data iterators, are held in
    # reference cycles.  A tf.data iterator that calls Python (`fit_input`'s
    # numpy_function; Keras' PyDataset generator logged "Error occurred when
    # finalizing GeneratorDataset iterator") should not outlive it: free them now.
    gc.collect()
    return interrupted_by


def _publish(files: dict[Path, str | os.PathLike | None]) -> None:
    """Copy each working file that exists to where the caller wants it (atomically)."""
    for working_file, final in files.items():
        if final is not None and working_file.exists():
            write_atomically(final, lambda partial, source=working_file: shutil.copy(source, partial))


def _write_failure(error: OSError) -> str:
    """What failed, in one line: h5py's messages span lines and bury the reason."""
    text = str(error)
    found = dict(re.findall(r"\b(filename|name|error message) = '([^']*)'", text))
    reason = found.get("error message") or (
        os.strerror(error.errno) if error.errno else one_line(text, 160)
    )
    name = found.get("filename") or found.get("name") or error.filename
    return f"{reason} while writing {name}" if name else reason


def _close_failed_files() -> None:
    """Close and delete the HDF5 files a failed write left open.

    Such a file is incomplete, and HDF5 cannot close it while the disk is full: it
    would retry the write at exit, print tracebacks and can crash the process.  Its
    contents are given up first (truncated), so the close has room to succeed.
    """
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        gc.collect()
        for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
            with contextlib.suppress(Exception):
                name = os.fsdecode(file_id.name)
                os.ftruncate(file_id.get_vfd_handle(), 0)
                while file_id.valid:
                    file_id.close()
                os.unlink(name)
        gc.collect()
    finally:
        sys.unraisablehook = hook


def _keep_completed_rows(log: Path, epochs: int) -> None:
    """Drop log rows of epochs the backup does not hold (a crash between the two, or a
    log left by a run that was started afresh)."""
    if not log.exists():
        return
    rows = log.read_text().splitlines(keepends=True)[: epochs + 1]  # header + epochs
    write_atomically(log, lambda partial: partial.write_text("".join(rows) if epochs else ""))


def _result(logged: dict[str, list], callbacks: _Callbacks,
            interrupted_by: int | None) -> TrainingResult:
    """What training did, from every completed epoch's logs (earlier sessions' too)."""
    history = {key: [as_python(v) for v in values] for key, values in logged.items()}
    history.pop("epoch_seconds", None)  # the history holds metrics only, as the original's
    result = _outcome(history, callbacks.timer.seconds,
                      callbacks.early_stopping.stopped_epoch > 0)
    if interrupted_by is not None:
        result.stop_reason = "interrupted"
        result.interrupted_by = interrupted_by
    return result


def _outcome(
    history: dict[str, list[float]], epoch_seconds: list[float], stopped_early: bool
) -> TrainingResult:
    """The best epoch and why training stopped (interruptions aside)."""
    val = history.get("val_accuracy", [])
    last_losses = [values[-1] for key, values in history.items()
                   if key in ("loss", "val_loss") and values]
    if not all(math.isfinite(loss) for loss in last_losses):
        reason = "nan_loss"
    elif stopped_early:
        reason = "early_stopping"
    else:
        reason = "max_epochs"
    finite = [v for v in val if math.isfinite(v)]
    if not finite:  # no epoch finished, or every one diverged
        return TrainingResult(history, epoch_seconds, 0, float("nan"), reason)
    best = val.index(max(finite))
    return TrainingResult(history, epoch_seconds, best + 1, float(val[best]), reason)


def evaluate(model: keras.Model, data: Dataset, batch_size: int) -> float:
    """Test-set accuracy (argmax of the output against the label)."""
    batches = ImageBatches(data.x_test, data.y_test, batch_size)
    return float(model.evaluate(fit_input(batches), return_dict=True, verbose=0)["accuracy"])
