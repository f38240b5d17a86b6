"""What a run prints and logs per epoch, fit for a terminal and for a file.

`--verbose` means what it means to Keras' `fit`: 0 silent, 1 a progress bar
per epoch, 2 one line per epoch.  The default is 1 on a terminal and 2
otherwise, so that a log file (every cluster job) reads one plain line per
epoch, without redraws or colour codes.
"""

from __future__ import annotations

import json
import math
import sys

import keras

from brainprop.train.resume import as_python
from brainprop.utils.compat import TensorBoardPerEpoch

README_SECTION = "What learning looks like"
# The share of the way from chance to perfect accuracy that still counts as chance
# (`ChanceHint`).
AT_CHANCE = 0.02


def default_verbosity(stream=None) -> int:
    """1 (a progress bar) when `stream` (stdout) is a terminal, else 2 (a line per epoch)."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    """`Epoch 3/500 - 2.1s - loss: 0.0412 - accuracy: 0.9123 - val_loss: ... - learning_rate: 0.1`.

    Per-class accuracies, and the angles of a network with feedback weights (one
    `weight_angle/<layer>` and one `update_angle/<layer>` per weight layer), are left to
    the CSV log, the history and TensorBoard: so many numbers make no readable line.
    """
    parts = [f"Epoch {epoch}/{epochs}"]
    if "epoch_seconds" in logs:
        parts.append(f"{float(logs['epoch_seconds']):.1f}s")
    # Keras' order: training metrics, then validation ones, then the learning rate.
    for key in sorted(logs, key=lambda k: (k == "learning_rate", k.startswith("val_"), k != "loss"
                                           and k != "val_loss", k)):
        value = as_python(logs[key])
        if key == "epoch_seconds" or "/" in key or isinstance(value, list) or value is None:
            continue
        parts.append(f"{key}: {value:.4g}" if key == "learning_rate" else f"{key}: {value:.4f}")
    return " - ".join(parts)


class EpochLine(keras.callbacks.Callback):
    """One plain line per epoch on stdout, as `fit(verbose=2)` promises, and no more."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        stream = sys.stdout if self.stream is None else self.stream
        print(epoch_line(epoch + 1, self.params.get("epochs", 0), logs or {}),
              file=stream, flush=True)


class ChanceHint(keras.callbacks.Callback):
    """Says once, early on, that validation accuracy at chance is expected of BrainProp.

    BrainProp learns from one rewarded or unrewarded choice per image, so it often
    chooses one class for every image at first and finds the others one at a time
    (the paper's Section 3); the plateau looks like a bug to a newcomer.  Printed
    before the next epoch starts, so that it never splits Keras' progress bar.

    "At chance" is measured on the scale from chance (1/n_classes) to every image right:
    the note is said while validation accuracy has come less than `AT_CHANCE` (2%) of
    that way, `(accuracy - 1/n) / (1 - 1/n) < 0.02` (Cohen's kappa against a uniform
    guess).  With 10 classes that is below 0.118 (0.110 is at chance, 0.130 is not);
    with 3, below 0.347 (0.340 is, 0.383 is not); with 100, below 0.030.
    """

    def __init__(self, n_classes: int, within_epochs: int = 3, stream=None):
        super().__init__()
        self.chance = 1.0 / n_classes
        self.below = self.chance + AT_CHANCE * (1.0 - self.chance)
        self.within_epochs = within_epochs
        self.stream = stream
        self.pending: str | None = None
        self.said = False

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if self.said or accuracy is None or epoch >= self.within_epochs:
            return
        accuracy = float(accuracy)
        if math.isfinite(accuracy) and accuracy < self.below:
            self.said = True
            self.pending = (
                f"Note: validation accuracy {accuracy:.3f} is at chance (1/{round(1 / self.chance)}"
                f" = {self.chance:.3f}) after epoch {epoch + 1}. That is expected early in "
                "BrainProp training: it often chooses one class for every image at first and "
                "then finds the classes one at a time, which can take several epochs "
                f"(README, \"{README_SECTION}\")."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._flush()

    def on_train_end(self, logs=None):
        self._flush()

    def _flush(self):
        if self.pending:
            print(self.pending, file=sys.stdout if self.stream is None else self.stream,
                  flush=True)
            self.pending = None


class CSVLog(keras.callbacks.CSVLogger):
    """Keras' CSV log with epochs counted from 1, as printed, and lists as JSON.

    A per-class accuracy cell reads back with `json.loads(cell)`.
    """

    def on_epoch_end(self, epoch, logs=None):
        cells = {}
        for key, value in (logs or {}).items():
            value = as_python(value)
            cells[key] = json.dumps(value) if isinstance(value, list) else value
        super().on_epoch_end(epoch + 1, cells)


class TensorBoardLog(TensorBoardPerEpoch):
    """Keras' TensorBoard callback, once per epoch: every logged number, each class's
    accuracy as a scalar of its own (`epoch_class_accuracy/3`), and the learning rate.

    Steps are epochs counted from 1, as printed and in the CSV log.  TensorBoard's
    summaries are TensorFlow's: it is imported for them under any backend.
    """

    def __init__(self, log_dir):
        super().__init__(log_dir, _scalars)


def _scalars(logs: dict | None) -> dict[str, float]:
    """`logs` with every list spread into one number per entry: `class_accuracy/3`."""
    scalars = {}
    for key, value in (logs or {}).items():
        value = as_python(value)
        if isinstance(value, list):
            scalars.update({f"{key}/{k}": v for k, v in enumerate(value)})
        elif value is not None:
            scalars[key] = value
    return scalars
