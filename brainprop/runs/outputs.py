"""What `-s` leaves behind: accuracy plot, history (pickle and JSON), weights, run summary,
and for a network with feedback weights the plot of its angles with backpropagation.

Nothing existing is overwritten: every run reserves a fresh stem
(`CIFAR10_deep_BrainProp_seed1`, then `..._seed1_2`, ...), and every file is
written under a temporary name and renamed into place, so a crash never
leaves a truncated file under a real name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from brainprop.model.feedback import ANGLES, UPDATE_ANGLE, WEIGHT_ANGLE
from brainprop.runs.runconfig import RunConfig
from brainprop.utils.atomic import write_atomically
from brainprop.utils.errors import BrainPropError
from brainprop.utils.locks import LockHeld, exclusive
from brainprop.utils.plotting import curve_style, epoch_axis, legend_below, plt, save_figure


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The paths of one run's outputs, all named after one stem.  `angles`: the run
    measures its alignment with backpropagation (feedback other than `symmetric`), and
    leaves the plot of its angles."""

    stem: Path
    angles: bool = False

    def _with(self, suffix: str) -> Path:
        return self.stem.with_name(self.stem.name + suffix)

    @property
    def plot_pdf(self) -> Path:
        return self._with("_accuracy.pdf")

    @property
    def plot_png(self) -> Path:
        return self._with("_accuracy.png")

    @property
    def angles_pdf(self) -> Path:
        return self._with("_angles.pdf")

    @property
    def angles_png(self) -> Path:
        return self._with("_angles.png")

    @property
    def history(self) -> Path:
        return self._with("_history.pkl")

    @property
    def history_json(self) -> Path:
        return self._with("_history.json")

    @property
    def weights(self) -> Path:
        return self._with("_weights.weights.h5")

    @property
    def summary(self) -> Path:
        return self._with("_summary.json")

    @property
    def log(self) -> Path:
        return self._with("_log.csv")

    @property
    def backup(self) -> Path:
        """Where an unfinished run keeps its backup; it disappears when the run ends."""
        return self.stem.with_name(f".{self.stem.name}.backup")

    def outputs(self) -> dict[str, Path]:
        """Every file the run leaves behind, by kind (the summary's `files`)."""
        files = {"plot_pdf": self.plot_pdf, "plot_png": self.plot_png}
        if self.angles:
            files.update(angles_pdf=self.angles_pdf, angles_png=self.angles_png)
        return {**files, "history": self.history, "history_json": self.history_json,
                "weights": self.weights, "summary": self.summary, "log": self.log}


def check_writable(output_dir: str | os.PathLike) -> Path:
    """Make sure `output_dir` exists or can be made, and takes files; create nothing.

    Checked before any training, so a mistyped folder costs seconds, not a run.
    """
    directory = Path(output_dir)
    for part in (directory, *directory.parents):
        if part.is_symlink() and not part.exists():
            raise BrainPropError(
                f"cannot write to output directory {directory}: {part} is a symbolic link "
                "to nothing (or one of a loop of links); fix the link or choose another "
                "--output-dir"
            )
    existing = next(p for p in (directory, *directory.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise BrainPropError(
            f"cannot write to output directory {directory}: {existing} is a file; "
            "choose another with --output-dir"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise BrainPropError(
            f"cannot write to output directory {directory} ({error.strerror}): "
            "choose another with --output-dir"
        ) from None
    return directory


def _stems(output_dir: Path, base: str) -> Iterator[RunFiles]:
    for number in range(1, 100_000):
        yield RunFiles(output_dir / (base if number == 1 else f"{base}_{number}"))


def reserve_run_files(output_dir: Path, base: str) -> RunFiles:
    """Claim the first stem `base`, `base_2`, ... with no file of any kind yet.

    The claim is the creation of the run's backup folder, which fails if it
    exists, so two runs started together never pick the same stem.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for files in _stems(output_dir, base):
        if any(path.exists() for path in files.outputs().values()):
            continue
        try:
            files.backup.mkdir()
        except FileExistsError:
            continue
        return files
    raise BrainPropError(f"too many runs named {base} in {output_dir}: use another --output-dir")


def find_unfinished(output_dir: Path, base: str) -> RunFiles:
    """The newest run `base`, `base_2`, ... that still has its backup folder."""
    unfinished = None
    for files in _stems(output_dir, base):
        if files.backup.is_dir():
            unfinished = files
        elif not any(path.exists() for path in files.outputs().values()):
            break
    if unfinished is None:
        raise BrainPropError(
            f"no interrupted run {base} in {output_dir} to resume: "
            "start it without --resume (or give the --output-dir, --seed and --feedback it used)"
        )
    return unfinished


def release_run_files(files: RunFiles) -> None:
    """Give up the name of a new run that ended before its first epoch: nothing of it
    is worth keeping, and the next run takes the name."""
    for path in files.outputs().values():
        path.unlink(missing_ok=True)
    drop_backup(files)


def drop_backup(files: RunFiles) -> None:
    """Delete the run's backup folder, gone at once for every other process.

    It is renamed away before it is emptied: deleted file by file, it would lose its lock
    while the backup was still there, and a process waiting for the run (`reproduce`
    after its driver was killed) would take a finished run for an interrupted one.
    """
    if not files.backup.is_dir():
        return
    doomed = files.backup.with_name(f"{files.backup.name}.removed-{os.getpid()}")
    shutil.rmtree(doomed, ignore_errors=True)  # left by a crash of a process of this id
    files.backup.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


LOCK_FILE = "lock"
SETTINGS_FILE = "settings.json"


@contextlib.contextmanager
def hold_run(files: RunFiles) -> Iterator[None]:
    """Be the only process working on this run (training, resuming, saving) for the block.

    The lock lives in the run's backup folder and dies with its process, so a crash
    or `kill -9` never leaves a run locked.
    """
    try:
        with exclusive(files.backup / LOCK_FILE):
            yield
    except LockHeld as held:
        raise _being_trained(files, held) from None


def run_holder(files: RunFiles) -> LockHeld | None:
    """The process that holds the run (`hold_run`) right now, as LockHeld (its `pid`
    when it recorded one), or None when none does; writes nothing."""
    lock = files.backup / LOCK_FILE
    if not lock.is_file():
        return None
    try:
        with exclusive(lock, record_pid=False):
            pass
    except LockHeld as held:
        return held
    except OSError:  # unreadable: hold_run, which opens it for writing, says why
        pass
    return None


def check_not_held(files: RunFiles) -> None:
    """BrainPropError if a process holds the run (`hold_run`) right now; writes nothing.

    For `--resume` to refuse before loading data, as `hold_run` refuses later.
    """
    held = run_holder(files)
    if held is not None:
        raise _being_trained(files, held)


def _being_trained(files: RunFiles, held: LockHeld) -> BrainPropError:
    who = f"process {held.pid}" if held.pid else "another process"
    return BrainPropError(
        f"{files.stem.name} in {files.stem.parent} is being trained by {who} right now; "
        "wait for it to end (or stop it) before resuming"
    )


def record_settings(files: RunFiles, settings: dict) -> None:
    """Keep the options that decide how the run trains (`Hyperparameters.settings()`,
    by `RunConfig` field), for `--resume` to compare."""
    path = files.backup / SETTINGS_FILE
    write_atomically(path, lambda partial: partial.write_text(json.dumps(settings) + "\n"))


# Fields that backups of earlier versions recorded under another name.
_EARLIER_NAMES = {"weight_std": "init_std"}


def _by_field(recorded: dict) -> dict:
    """Recorded settings by `RunConfig` field.  Earlier backups keyed them by option
    (`--batch-size`), the initial weights' scale by an earlier name of its field."""
    fields = {}
    for key, value in recorded.items():
        name = str(key).removeprefix("--").replace("-", "_")
        fields[_EARLIER_NAMES.get(name, name)] = value
    return fields


def _option(field: str) -> str:
    return RunConfig.flag_of(field) if field in RunConfig.__dataclass_fields__ else field


def check_settings(files: RunFiles, settings: dict) -> None:
    """BrainPropError listing the options that differ from the interrupted run's."""
    path = files.backup / SETTINGS_FILE
    if not path.is_file():  # a backup from before settings were recorded
        return
    try:
        recorded = _by_field(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError):
        return
    differences = [
        f"{_option(field)} {_shown(settings.get(field))} "
        f"(the run has {_shown(recorded.get(field))})"
        for field in sorted(set(settings) | set(recorded), key=_option)
        if settings.get(field) != recorded.get(field)
    ]
    if differences:
        raise BrainPropError(
            f"--resume with other settings than the interrupted run {files.stem.name}: "
            f"{'; '.join(differences)}; give the run's settings (the command it printed "
            "when stopped), or start a new run without --resume"
        )


def _shown(value) -> str:
    return "not given" if value is None else str(value)


def write_history(path: Path, dataset: str, algorithm: str, history: dict) -> None:
    """The original's pickle: `[dataset, algorithm, history_dict]`."""

    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            pickle.dump([dataset, algorithm, history], f)

    write_atomically(path, write)


def write_history_json(path: Path, dataset: str, algorithm: str, history: dict) -> None:
    """The same history as JSON, which (unlike a pickle) cannot carry code: what the
    report reads.  NaN (a diverged epoch) is written as null, as JSON has no NaN."""
    content = {"dataset": dataset, "algorithm": algorithm, "history": _finite(history)}

    def write(partial: Path) -> None:
        partial.write_text(json.dumps(content, allow_nan=False) + "\n")

    write_atomically(path, write)


def _finite(value):
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(path: Path, summary: dict) -> None:
    def write(partial: Path) -> None:
        partial.write_text(json.dumps(summary, indent=2) + "\n")

    write_atomically(path, write)


def plot_accuracy(history: dict, title: str, train_label: str, pdf_path: Path,
                  png_path: Path) -> None:
    """Training and validation accuracy per epoch, best validation epoch marked."""
    train = history.get("accuracy", [])
    val = history.get("val_accuracy", [])
    n_epochs = max(len(train), len(val))
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    ax.plot(range(1, len(train) + 1), train, **curve_style(n_epochs), label=train_label)
    ax.plot(range(1, len(val) + 1), val, **curve_style(n_epochs), label="validation")
    finite = [i for i, v in enumerate(val) if math.isfinite(v)]
    if finite:
        best = max(finite, key=lambda i: (val[i], -i))
        ax.plot(best + 1, val[best], "k*", markersize=12, linestyle="none",
                label=f"best: {val[best]:.4f} at epoch {best + 1}")
    ax.set(ylabel="accuracy", title=title, ylim=(0, 1))
    epoch_axis(ax, n_epochs)
    ax.grid(alpha=0.3)
    legend_below(ax)
    save_figure(fig, [pdf_path, png_path])


def _is_angle(key: str) -> bool:
    """Whether a history's `key` is an angle with backpropagation, `<angle>/<layer>`."""
    return key.startswith(tuple(f"{angle}/" for angle in ANGLES))


def has_angles(history: dict) -> bool:
    """Whether `history` holds angles with backpropagation (a network with feedback)."""
    return any(_is_angle(key) for key in history)


def plot_angles(history: dict, title: str, pdf_path: Path, png_path: Path) -> None:
    """The angles with backpropagation per weight layer and epoch, in degrees: between W
    and B (`weight_angle/<layer>`) and between the update made and backpropagation's
    (`update_angle/<layer>`), one panel each, a layer the same colour in both."""
    layers = list(dict.fromkeys(key.split("/", 1)[1] for key in history if _is_angle(key)))
    colours = {layer: f"C{index % 10}" for index, layer in enumerate(layers)}
    n_epochs = max((len(values) for values in history.values()), default=0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained", sharey=True)
    panels = ((WEIGHT_ANGLE, "between W and B"), (UPDATE_ANGLE, "update against backpropagation"))
    highest = 90.0
    for ax, (name, what) in zip(axes, panels, strict=True):
        drawn = [(layer, history[f"{name}/{layer}"]) for layer in layers
                 if f"{name}/{layer}" in history]
        for layer, values in drawn:
            values = [math.nan if v is None else v for v in values]
            ax.plot(range(1, len(values) + 1), values, **curve_style(n_epochs),
                    color=colours[layer], label=layer)
            highest = max([highest, *(v for v in values if math.isfinite(v))])
        if drawn:
            legend_below(ax, ncols=4)
        else:  # direct feedback: no B of W's shape
            ax.text(0.5, 0.5, "no feedback weights of W's shape\n(direct feedback)",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_title(f"{name}: {what}", fontsize="medium")
        epoch_axis(ax, n_epochs)
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="angle (degrees)", ylim=(0, 90 if highest <= 90 else 180))
    axes[0].yaxis.set_major_locator(plt.MultipleLocator(15 if highest <= 90 else 30))
    fig.suptitle(title)
    save_figure(fig, [pdf_path, png_path])
