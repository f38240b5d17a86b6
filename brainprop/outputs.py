"""What `-s` leaves behind: accuracy plot, history pickle, weights, run summary.

Nothing existing is overwritten: every run reserves a fresh stem
(`CIFAR10_deep_BrainProp_seed1`, then `..._seed1_2`, ...), and every file is
written under a temporary name and renamed into place, so a crash never
leaves a truncated file under a real name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from brainprop.errors import BrainPropError  # noqa: E402

SUFFIXES = {
    "plot_pdf": "_accuracy.pdf",
    "plot_png": "_accuracy.png",
    "history": "_history.pkl",
    "weights": "_weights.weights.h5",
    "summary": "_summary.json",
    "log": "_log.csv",
}


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The paths of one run's outputs."""

    stem: Path

    def __getattr__(self, kind: str) -> Path:
        if kind not in SUFFIXES:
            raise AttributeError(kind)
        return self.stem.with_name(self.stem.name + SUFFIXES[kind])

    def names(self) -> dict[str, str]:
        return {kind: getattr(self, kind).name for kind in SUFFIXES}


def check_writable(output_dir: str | os.PathLike) -> Path:
    """Make sure `output_dir` exists or can be made, and takes files; create nothing.

    Checked before any training, so a mistyped folder costs seconds, not a run.
    """
    directory = Path(output_dir)
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


def backup_dir(files: RunFiles) -> Path:
    """Where an unfinished run keeps its backup; it disappears when the run ends."""
    return files.stem.with_name(f".{files.stem.name}.backup")


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
        if any(getattr(files, kind).exists() for kind in SUFFIXES):
            continue
        try:
            backup_dir(files).mkdir()
        except FileExistsError:
            continue
        return files
    raise BrainPropError(f"too many runs named {base} in {output_dir}: use another --output-dir")


def find_unfinished(output_dir: Path, base: str) -> RunFiles:
    """The newest run `base`, `base_2`, ... that still has its backup folder."""
    unfinished = None
    for files in _stems(output_dir, base):
        if backup_dir(files).is_dir():
            unfinished = files
        elif not any(getattr(files, kind).exists() for kind in SUFFIXES):
            break
    if unfinished is None:
        raise BrainPropError(
            f"no interrupted run {base} in {output_dir} to resume: "
            "start it without --resume (or give the --output-dir and --seed it used)"
        )
    return unfinished


def write_atomically(path: Path, write) -> None:
    """Call `write(partial)` on a hidden name beside `path`, then rename it to `path`."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_history(path: Path, dataset: str, algorithm: str, history: dict) -> None:
    """The original's pickle: `[dataset, algorithm, history_dict]`."""

    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            pickle.dump([dataset, algorithm, history], f)

    write_atomically(path, write)


def write_summary(path: Path, summary: dict) -> None:
    def write(partial: Path) -> None:
        partial.write_text(json.dumps(summary, indent=2) + "\n")

    write_atomically(path, write)


def curve_style(n_epochs: int) -> dict:
    """Markers on a curve, about twenty at most: a one-epoch run still shows a point."""
    return {"marker": "o", "markersize": 3.5, "markevery": max(1, n_epochs // 20)}


def epoch_axis(ax, n_epochs: int) -> None:
    """Whole epochs on the x axis, from 1 to `n_epochs` with half an epoch to spare."""
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")


def legend_below(ax, ncols: int = 3) -> None:
    """The legend under the axes, where it covers no curve."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=ncols, frameon=False,
              fontsize="small")


def plot_accuracy(history: dict, title: str, pdf_path: Path, png_path: Path) -> None:
    """Training and validation accuracy per epoch, best validation epoch marked."""
    train = history.get("accuracy", [])
    val = history.get("val_accuracy", [])
    n_epochs = max(len(train), len(val))
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    ax.plot(range(1, len(train) + 1), train, **curve_style(n_epochs),
            label="training (reward rate)" if "BrainProp" in title else "training")
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
    for path in (pdf_path, png_path):
        write_atomically(path, lambda partial: fig.savefig(partial, format=path.suffix[1:]))
    plt.close(fig)
