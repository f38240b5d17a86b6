"""The paper's tables and figures from a folder of runs: `python -m brainprop.report RUNS_DIR`.

Reads every `*_summary.json` (and the history it names: the JSON history, or for runs
that have none the history pickle, read without running code found in it) and writes,
into `RUNS_DIR/report` or `--out DIR`:

* `tables.md` and `tables.csv`: per dataset/architecture/algorithm, epochs and accuracy
  as mean(std) over seeds beside the paper's figures (`brainprop/tables/paper.py`);
* `figure5.png` and `.pdf`: validation accuracy against epoch, mean +-1 std over seeds,
  BrainProp against EBP, one panel per dataset/architecture;
* `class_discovery.png` and `.pdf`: the validation accuracy of each class per epoch for
  one BrainProp run (the classes found one at a time, Section 3 of the paper);
* where runs sent the learning signal down through another feedback than the paper's
  (`--feedback`): a section "Feedback" in `tables.md` (rules x feedback kinds, mean(std)
  accuracy and epochs over seeds), `feedback.csv`, and `feedback_angles.png` and `.pdf`
  (the angles `weight_angle/<layer>` and `update_angle/<layer>` per epoch, mean over seeds).

The paper's tables and Figure 5 count only runs with the paper's (symmetric) feedback.

Report files are derived from the runs, so writing the report again replaces them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from brainprop.model.feedback import ANGLES, DEFAULT_FEEDBACK, FEEDBACK
from brainprop.model.rules import RULES
from brainprop.runs.runconfig import MAX_SEED
from brainprop.tables.paper import FEEDBACK_TABLE, PAPER_RESULTS, TABLE_TITLES, TABLES, table_of
from brainprop.utils import safepickle
from brainprop.utils.atomic import write_atomically
from brainprop.utils.errors import BrainPropError, Parser, one_line, plural, run_command
from brainprop.utils.invocation import invoked_as, module_invocation
from brainprop.utils.plotting import curve_style, epoch_axis, legend_below, plt, save_figure
from brainprop.utils.stats import mean_std

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass
class SavedRun:
    summary: dict
    history: dict | None  # None when the history file is missing
    path: Path  # the summary file

    @property
    def config(self) -> tuple[str, str, str]:
        return (self.summary["dataset"], self.summary["architecture"], self.summary["algorithm"])

    @property
    def feedback(self) -> str:
        """The kind of feedback the run sent its learning signal down through; a summary
        that names none is of the paper's (symmetric) feedback."""
        return recorded_feedback(self.summary)

    @property
    def identity(self) -> tuple:
        """What tells runs apart: (dataset, architecture, algorithm, feedback, seed)."""
        return (*self.config, self.feedback, self.summary["seed"])

    @property
    def accuracy(self) -> float:
        """Percent: test accuracy at the best epoch when validation was held out; NaN
        for a run that diverged before any epoch had a finite validation accuracy."""
        held_out = self.summary.get("test_accuracy_at_best_epoch")
        value = held_out if held_out is not None else self.summary["best_val_accuracy"]
        return math.nan if value is None else 100 * float(value)

    @property
    def in_paper(self) -> bool:
        """Whether the paper trained this network on this data set (the summary says so;
        one written before it did is judged by the paper's tables)."""
        dataset, architecture, _ = self.config
        return bool(self.summary.get("paper_combination", table_of(dataset, architecture)))

    @property
    def diverged(self) -> bool:
        return math.isnan(self.accuracy)


def recorded_feedback(summary: dict) -> str:
    """The feedback a run summary records (its own "feedback", else its hyperparameters'
    or config's), the paper's (symmetric) where it records none."""
    for record in (summary, summary.get("hyperparameters", {}), summary.get("config", {})):
        if "feedback" in record:
            return record["feedback"]
    return DEFAULT_FEEDBACK


def load_runs(runs_dir: str | Path) -> list[SavedRun]:
    """Every run in `runs_dir`, one per (dataset, architecture, algorithm, feedback, seed).

    When a seed was run twice (`..._seed1` and `..._seed1_2`), the first run (the
    unnumbered stem) counts and the others are reported on stderr.
    """
    folder = Path(runs_dir)
    if not folder.is_dir():
        raise BrainPropError(f"{folder} is not a folder: pass the folder the runs wrote into")
    runs: dict[tuple, SavedRun] = {}
    # Shortest name first: `..._seed1` before `..._seed1_2` before `..._seed1_10`.
    for path in sorted(folder.glob("*_summary.json"), key=lambda p: (len(p.name), p.name)):
        run = _read_run(path)
        if run.summary.get("interrupted"):
            print(f"report: {path.name} is an interrupted run (resume it); ignored",
                  file=sys.stderr)
            continue
        key = run.identity
        if key in runs:
            print(f"report: {path.name} repeats {runs[key].path.name}; ignored", file=sys.stderr)
            continue
        runs[key] = run
    return list(runs.values())


REQUIRED = ("dataset", "architecture", "algorithm", "seed", "best_epoch", "epochs_run",
            "best_val_accuracy")
# Larger numbers of epochs are no run's: they would overflow the tables' floats.
MAX_EPOCHS = 10**9


def _read_run(path: Path) -> SavedRun:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BrainPropError(f"cannot read {path} ({one_line(error)}); move it away") from None
    _check_summary(summary, path)
    files = summary.get("files", {})
    history = None
    for kind, read in (("history_json", _read_json_history), ("history", _read_pickled_history)):
        history_path = _named_file(path, files, kind)
        if history_path is not None and history_path.is_file():
            history = _checked_history(read(history_path), history_path)
            break
    return SavedRun(summary, history, path)


def _check_summary(summary: object, path: Path) -> None:
    """BrainPropError unless `summary` holds what the report reads, each of its type."""
    def refuse(problem: str):
        raise BrainPropError(f"{path} is not a run summary ({problem}); move it away")

    if not isinstance(summary, dict):
        refuse(f"it holds a {type(summary).__name__}, not a JSON object")
    missing = [key for key in REQUIRED if key not in summary]
    if missing:
        refuse(f"no {', '.join(missing)}")
    for key in ("dataset", "architecture", "algorithm"):
        if not isinstance(summary[key], str) or not summary[key]:
            refuse(f"{key} is {one_line(repr(summary[key]))}, not a name")
    for key, high in (("seed", MAX_SEED), ("best_epoch", MAX_EPOCHS), ("epochs_run", MAX_EPOCHS)):
        value = summary[key]
        if type(value) is not int or not 0 <= value <= high:
            refuse(f"{key} is {one_line(repr(value))}, not a whole number from 0 to {high}")
    for key in ("best_val_accuracy", "test_accuracy_at_best_epoch"):
        value = summary.get(key)
        if value is not None and not _is_accuracy(value):
            refuse(f"{key} is {one_line(repr(value))}, not an accuracy from 0 to 1 or null")
    for key in ("files", "hyperparameters", "config"):
        if not isinstance(summary.get(key, {}), dict):
            refuse(f"{key} is not a mapping")
    for place, record in (("", summary), ("hyperparameters.", summary.get("hyperparameters", {})),
                          ("config.", summary.get("config", {}))):
        kind = record.get("feedback", DEFAULT_FEEDBACK)
        if not isinstance(kind, str) or not kind:
            refuse(f"{place}feedback is {one_line(repr(kind))}, not the name of a kind of feedback")
    max_epochs = summary.get("hyperparameters", {}).get("max_epochs")
    if max_epochs is not None and (type(max_epochs) is not int or not 0 < max_epochs <= MAX_EPOCHS):
        refuse(f"hyperparameters.max_epochs is {one_line(repr(max_epochs))}, not a number "
               "of epochs")


def _is_accuracy(value: object) -> bool:
    """A real number from 0 to 1 (bools, NaN and infinities are not)."""
    return type(value) in (int, float) and 0 <= value <= 1


def _named_file(summary_path: Path, files: dict, kind: str) -> Path | None:
    """The file the summary names for `kind`, which must be a file of its own folder."""
    name = files.get(kind)
    if name is None:
        return None
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise BrainPropError(
            f"{summary_path} names {kind} file {name!r}, which is not a file beside it; "
            "move the summary away"
        )
    return summary_path.parent / name


def _read_json_history(path: Path) -> object:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BrainPropError(f"cannot read {path} ({one_line(error)}); move it away") from None
    return content.get("history") if isinstance(content, dict) else None


def _read_pickled_history(path: Path) -> object:
    """The history of an older run or of the original release, from its pickle
    (`[dataset, algorithm, history]`), admitting only data types."""
    try:
        with open(path, "rb") as f:
            content = safepickle.load(f, str(path), "a history pickle")
    except BrainPropError:
        raise
    except Exception as error:  # truncated, or not a pickle at all
        raise BrainPropError(
            f"cannot read {path} ({type(error).__name__}: {one_line(error)}); "
            "it is truncated or not a history pickle: move it away"
        ) from None
    if isinstance(content, (list, tuple)) and len(content) == 3:
        return content[2]
    return None


def _checked_history(history: object, path: Path) -> dict[str, list]:
    """`history` as {metric: [float, ...]}, or for the per-class metrics
    (`*class_accuracy`) {metric: [[float, ...], ...]} (epochs by classes); NaN where it
    holds null.  Accuracies lie in [0, 1] (or are NaN); every metric has one value per epoch.
    """
    if not isinstance(history, dict):
        raise BrainPropError(f"{path} is not a run history (it holds no dict of metrics); "
                             "move it away")
    checked = {str(key): _checked_metric(str(key), values, path)
               for key, values in history.items()}
    epochs = {key: len(values) for key, values in checked.items()}
    if len(set(epochs.values())) > 1:
        counts = ", ".join(f"{key} {count}" for key, count in epochs.items())
        raise BrainPropError(f"{path} is not a run history (its metrics cover different "
                             f"numbers of epochs: {one_line(counts)}); move it away")
    return checked


def _checked_metric(key: str, values: object, path: Path) -> list:
    def refuse(problem: str):
        raise BrainPropError(f"{path} is not a run history (metric {one_line(repr(key))} "
                             f"{problem}); move it away")

    per_class = key.endswith("class_accuracy")
    angle = key.split("/")[0] in ANGLES
    shape = "a list of lists of numbers, one per class" if per_class else "a list of numbers"
    if not isinstance(values, (list, tuple)):
        refuse(f"is a {type(values).__name__}, not {shape}")
    if not values:  # no epoch completed
        return []
    try:
        array = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError, OverflowError) as error:
        refuse(f"is not {shape}: {one_line(error)}")
    if array.ndim != (2 if per_class else 1):
        refuse(f"has shape {array.shape}, not {shape}")
    known = array[~np.isnan(array)]
    if key.endswith("accuracy") and not np.all((known >= 0) & (known <= 1)):
        refuse("holds accuracies outside 0 to 1")
    if angle and not np.all((known >= 0) & (known <= 180)):
        refuse("holds angles outside 0 to 180 degrees")
    return array.tolist()


# --- tables -------------------------------------------------------------------------------


# The rows of data sets and networks the paper did not run (FashionMNIST, your own
# data, --beyond-paper): a table of their own, never compared with the paper's figures.
BEYOND = "beyond_paper"
BEYOND_TITLE = "Beyond the paper: data sets and networks it did not run (no paper figures to compare)"


@dataclasses.dataclass
class Row:
    table: str
    dataset: str
    architecture: str
    algorithm: str
    seeds: list[int]
    epochs: tuple[float, float]  # epoch of best validation accuracy: mean, std
    stopped: tuple[float, float]  # epochs run: mean, std
    accuracy: tuple[float, float]  # percent
    accuracy_on: str
    feedback: str = DEFAULT_FEEDBACK

    @property
    def paper(self):
        """The paper's figures for this row; None beyond the paper, which it never ran."""
        if self.table == BEYOND:
            return None
        return PAPER_RESULTS.get((self.dataset, self.architecture), {}).get(self.algorithm)


def _paper_rank(config: tuple[str, ...]) -> tuple:
    """Sort key: the paper's row order of (dataset, architecture), then the rest."""
    order = [key for rows in TABLES.values() for key in rows]
    return (order.index(config[:2]) if config[:2] in order else len(order), config)


def table_rows(runs: list[SavedRun]) -> list[Row]:
    """One row per dataset/architecture/algorithm, in the paper's order (the rules in
    the order they were declared), of the runs with the paper's (symmetric) feedback."""
    groups: dict[tuple[str, str, str], list[SavedRun]] = {}
    for run in runs:
        if run.feedback == DEFAULT_FEEDBACK:
            groups.setdefault(run.config, []).append(run)
    rows = []
    for config in sorted(groups, key=_row_rank):
        group = groups[config]
        table = (table_of(*config[:2]) if all(run.in_paper for run in group) else None) or BEYOND
        rows.append(_row(table, config, group))
    return rows


def _row(table: str, key: tuple[str, ...], group: list[SavedRun]) -> Row:
    """The row of `group`, the runs of `key` (dataset, architecture, algorithm[, feedback]):
    means and sample stds over their seeds."""
    group = sorted(group, key=lambda run: run.summary["seed"])
    held_out = {run.summary.get("test_accuracy_at_best_epoch") is not None for run in group}
    accuracy_on = {frozenset([True]): "test, best epoch on held-out validation",
                   frozenset([False]): "validation = test set (as the paper)"}.get(
        frozenset(held_out), "MIXED: some runs held out validation, some did not")
    return Row(
        table=table,
        dataset=key[0],
        architecture=key[1],
        algorithm=key[2],
        seeds=[run.summary["seed"] for run in group],
        epochs=mean_std([run.summary["best_epoch"] for run in group]),
        stopped=mean_std([run.summary["epochs_run"] for run in group]),
        accuracy=mean_std([run.accuracy for run in group]),
        accuracy_on=accuracy_on,
        feedback=key[3] if len(key) > 3 else DEFAULT_FEEDBACK,
    )


def _row_rank(key: tuple[str, ...]) -> tuple:
    """Sort key of (dataset, architecture, algorithm[, feedback]): the paper's order, the
    rules' declared order, the kinds' declared order."""
    kinds = list(FEEDBACK)
    feedback = key[3] if len(key) > 3 else DEFAULT_FEEDBACK
    return (_paper_rank(key[:2]), _algorithm_rank(key[2]), key[2],
            kinds.index(feedback) if feedback in kinds else len(kinds), feedback)


def _mean_std_text(pair: tuple[float, float], digits: int) -> str:
    """`mean(std)` as the paper's tables write it; the mean alone for a single seed."""
    mean, std = pair
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f"({std:.{digits}f})")


def _diff(ours: float, paper: float | None, digits: int) -> str:
    return "" if paper is None else f"{ours - paper:+.{digits}f}"


MARKDOWN_NOTE = (
    "Epochs = epoch of best validation accuracy (1-based); stopped = epochs run. "
    "Ours: mean(std) over the seeds listed (sample std, ddof=1; none for one seed). "
    "Paper: mean(std) over 10 seeds (Pozzi, Bohte & Roelfsema, NeurIPS 2020). "
    "Diff = ours - paper."
)


def markdown_tables(rows: list[Row]) -> str:
    """The tables as Markdown, one section per paper table."""
    lines = ["# BrainProp: our runs against the paper", "", MARKDOWN_NOTE, ""]
    for table in [*TABLES, BEYOND]:
        selected = [row for row in rows if row.table == table]
        if not selected:
            continue
        lines += [f"## {TABLE_TITLES.get(table, BEYOND_TITLE)}", "",
                  "| dataset | architecture | rule | seeds | epochs (best) | paper | diff "
                  "| stopped | accuracy % | paper | diff | accuracy on |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in selected:
            paper = row.paper
            lines.append(" | ".join([
                f"| {row.dataset}", row.architecture, row.algorithm, str(len(row.seeds)),
                _mean_std_text(row.epochs, 1), f"{paper.epochs:g}({paper.epochs_std:g})" if paper else "",
                _diff(row.epochs[0], paper and paper.epochs, 1), _mean_std_text(row.stopped, 1),
                _mean_std_text(row.accuracy, 2),
                f"{paper.accuracy:.2f}({paper.accuracy_std:.2f})" if paper else "",
                _diff(row.accuracy[0], paper and paper.accuracy, 2), f"{row.accuracy_on} |",
            ]))
        lines.append("")
    return "\n".join(lines)


CSV_FIELDS = [
    "table", "dataset", "architecture", "algorithm", "n_seeds", "seeds",
    "best_epoch_mean", "best_epoch_std", "paper_epochs_mean", "paper_epochs_std",
    "epochs_diff", "epochs_run_mean", "epochs_run_std", "accuracy_mean", "accuracy_std",
    "paper_accuracy_mean", "paper_accuracy_std", "accuracy_diff", "accuracy_on",
]


def csv_tables(rows: list[Row]) -> str:
    """The tables as CSV (full precision; accuracy in percent; empty where unknown)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        paper = row.paper
        values = [
            row.table, row.dataset, row.architecture, row.algorithm, len(row.seeds),
            " ".join(map(str, row.seeds)), *row.epochs,
            *((paper.epochs, paper.epochs_std) if paper else (None, None)),
            row.epochs[0] - paper.epochs if paper else None, *row.stopped, *row.accuracy,
            *((paper.accuracy, paper.accuracy_std) if paper else (None, None)),
            row.accuracy[0] - paper.accuracy if paper else None, row.accuracy_on,
        ]
        writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                         for v in values])
    return text.getvalue()


# --- the feedback comparison --------------------------------------------------------------


def feedback_rows(runs: list[SavedRun]) -> list[Row]:
    """One row per dataset/architecture/algorithm/feedback, for each data set and network
    that has runs with a feedback other than the paper's (its symmetric runs included);
    in the paper's order, then the rules' and the kinds' declared order."""
    compared = {run.config[:2] for run in runs if run.feedback != DEFAULT_FEEDBACK}
    groups: dict[tuple[str, str, str, str], list[SavedRun]] = {}
    for run in runs:
        if run.config[:2] in compared:
            groups.setdefault((*run.config, run.feedback), []).append(run)
    return [_row(FEEDBACK_TABLE, key, groups[key]) for key in sorted(groups, key=_row_rank)]


def _feedback_cell(row: Row, show_seeds: bool) -> str:
    """`98.00(1.00) / 20.0(10.0)`: accuracy % / epoch of best accuracy, as Table 1 writes
    them; `[3]` after it, the number of seeds, where the cells' numbers differ."""
    seeds = f" [{len(row.seeds)}]" if show_seeds else ""
    return f"{_mean_std_text(row.accuracy, 2)} / {_mean_std_text(row.epochs, 1)}{seeds}"


def markdown_feedback(rows: list[Row]) -> str:
    """The feedback comparison as Markdown: a row per dataset/architecture/rule, a column
    per kind of feedback (in their declared order), each cell accuracy / epochs."""
    kinds = [kind for kind in FEEDBACK if any(row.feedback == kind for row in rows)]
    kinds += sorted({row.feedback for row in rows} - set(kinds))
    counts = sorted({len(row.seeds) for row in rows})
    varies = len(counts) > 1
    seeds = ("mean(std) over the seeds in brackets" if varies
             else f"mean(std) over {plural(counts[0], 'seed')}")
    on = "; ".join(sorted({row.accuracy_on for row in rows}))
    lines = [f"## {TABLE_TITLES[FEEDBACK_TABLE]}", "",
             f"Each cell: accuracy % / epoch of best validation accuracy, {seeds} (sample "
             f"std; none for one seed). Accuracy on: {on}. See docs/feedback.md for the "
             "kinds.", "",
             "| dataset | architecture | rule | " + " | ".join(kinds) + " |",
             "| --- | --- | --- |" + " --- |" * len(kinds)]
    cells: dict[tuple[str, str, str], dict[str, Row]] = {}
    for row in rows:
        cells.setdefault((row.dataset, row.architecture, row.algorithm), {})[row.feedback] = row
    for key, by_kind in cells.items():
        lines.append("| " + " | ".join([*key, *(_feedback_cell(by_kind[kind], varies)
                                                 if kind in by_kind else "" for kind in kinds)])
                     + " |")
    return "\n".join([*lines, ""])


FEEDBACK_CSV_FIELDS = [
    "dataset", "architecture", "algorithm", "feedback", "n_seeds", "seeds",
    "accuracy_mean", "accuracy_std", "best_epoch_mean", "best_epoch_std",
    "epochs_run_mean", "epochs_run_std", "accuracy_on",
]


def csv_feedback(rows: list[Row]) -> str:
    """The feedback comparison as CSV, one line per dataset/architecture/rule/kind (full
    precision; accuracy in percent; empty where unknown)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(FEEDBACK_CSV_FIELDS)
    for row in rows:
        values = [row.dataset, row.architecture, row.algorithm, row.feedback, len(row.seeds),
                  " ".join(map(str, row.seeds)), *row.accuracy, *row.epochs, *row.stopped,
                  row.accuracy_on]
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in values])
    return text.getvalue()


# --- figures ------------------------------------------------------------------------------


def curve_band(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs (1-based), mean and std over the runs still training at each epoch.

    Runs stop at different epochs; each epoch averages the runs that reached it.  The
    std is the sample std (ddof=1), NaN where only one run is left.
    """
    length = max(len(c) for c in curves)
    padded = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        padded[i, : len(curve)] = curve
    alive = np.sum(~np.isnan(padded), axis=0)
    mean = np.full(length, np.nan)  # NaN where no run has a finite value (no warning)
    mean[alive > 0] = np.nansum(padded[:, alive > 0], axis=0) / alive[alive > 0]
    squares = np.nansum((padded - mean) ** 2, axis=0)
    std = np.full(length, np.nan)
    std[alive > 1] = np.sqrt(squares[alive > 1] / (alive[alive > 1] - 1))
    return np.arange(1, length + 1), mean, std


def _save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    return save_figure(fig, [out_dir / f"{name}.png", out_dir / f"{name}.pdf"])


def plot_figure5(runs: list[SavedRun], out_dir: Path) -> list[Path]:
    """Validation accuracy per epoch, mean +-1 std over seeds, one panel per network, of
    the runs with the paper's (symmetric) feedback."""
    panels: dict[tuple[str, str], dict[str, list]] = {}
    beyond = set()  # panels of runs the paper did not do
    for run in runs:
        if run.history and run.history.get("val_accuracy") and run.feedback == DEFAULT_FEEDBACK:
            dataset, architecture, algorithm = run.config
            panel = panels.setdefault((dataset, architecture), {})
            panel.setdefault(algorithm, []).append(run.history["val_accuracy"])
            if not run.in_paper:
                beyond.add((dataset, architecture))
    if not panels:
        return []
    keys = sorted(panels, key=_paper_rank)
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.6 * columns, 6), 3.6 * rows + 0.4),
                             squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, keys, strict=False):
        for algorithm in sorted(panels[key], key=_algorithm_rank):
            curves = panels[key][algorithm]
            epochs, mean, std = curve_band(curves)
            color = RULES[algorithm].color if algorithm in RULES else None
            ax.plot(epochs, mean, color=color, **curve_style(len(epochs)),
                    label=f"{algorithm} ({plural(len(curves), 'seed')})")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.25, linewidth=0)
        ax.set(title=f"{key[0]} {key[1]}" + (" (beyond the paper)" if key in beyond else ""),
               ylabel="validation accuracy")
        epoch_axis(ax, max(len(c) for curves in panels[key].values() for c in curves))
        ax.grid(alpha=0.3)
        legend_below(ax, ncols=2)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("Validation accuracy, mean $\\pm$ 1 std over seeds (cf. paper Fig. 5)")
    return _save_figure(fig, out_dir, "figure5")


def _algorithm_rank(algorithm: str) -> int:
    """The rules in the order they were declared (`brainprop.model.rules`), others after."""
    order = list(RULES)
    return order.index(algorithm) if algorithm in order else len(order)


def class_discovery_run(runs: list[SavedRun], stem: str | None = None) -> SavedRun | None:
    """The run to show per class: the one named by `stem`, else one of a rule that
    discovers the classes one at a time (BrainProp) with the paper's feedback where
    there is one, on the first network of the paper's order (MNIST dense first), lowest
    seed."""
    usable = [run for run in runs if run.history and run.history.get("val_class_accuracy")
              and run.history.get("val_accuracy")]
    if stem is not None:
        for run in usable:
            if run.path.name.removesuffix("_summary.json") == stem:
                return run
        raise BrainPropError(
            f"no run {stem!r} with per-class accuracy in the folder: give the file name "
            "of a summary without _summary.json"
        )
    discovering = [run for run in usable
                   if run.config[2] in RULES and RULES[run.config[2]].discovers_classes]
    return min(discovering or usable, default=None,
               key=lambda r: (r.feedback != DEFAULT_FEEDBACK, _row_rank((*r.config, r.feedback)),
                              r.summary["seed"]))


def plot_class_discovery(run: SavedRun, out_dir: Path) -> list[Path]:
    """Validation accuracy of each class per epoch (and overall) for one run."""
    dataset, architecture, algorithm = run.config
    fig = class_discovery_figure(
        run.history, title=f"Per-class validation accuracy: {dataset} {architecture} "
        f"{algorithm}, seed {run.summary['seed']}", classes=run.summary.get("classes"))
    return _save_figure(fig, out_dir, "class_discovery")


def class_discovery_figure(history: Mapping | keras.callbacks.History, title: str | None = None,
                           classes: Sequence[str] | None = None):
    """The accuracy of each class per epoch, and over all classes: a matplotlib figure.

    `history` is what `fit` returned (or its `.history` dict, or a run's history file
    read back) for a model compiled with `brainprop.nets.metrics.ClassAccuracy` among
    its metrics: its validation curves (`val_class_accuracy`, `val_accuracy`) where
    `fit` had validation data, else the training ones.  `classes` names the class of
    each output unit in the legend (a run summary's `classes`).  Save it with `fig.savefig`.
    """
    history = getattr(history, "history", history)
    prefix = "val_" if history.get("val_class_accuracy") else ""
    if not history.get(f"{prefix}class_accuracy"):
        raise BrainPropError(
            "the history has no class_accuracy: compile the model with "
            "metrics=[brainprop.nets.metrics.ClassAccuracy(n_classes)] and fit it again"
        )
    per_class = np.stack([np.asarray(epoch, dtype=float)
                          for epoch in history[f"{prefix}class_accuracy"]])
    epochs = np.arange(1, len(per_class) + 1)
    n_classes = per_class.shape[1]
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    colors = plt.get_cmap("tab10" if n_classes <= 10 else "viridis")
    style = curve_style(len(epochs)) if n_classes <= 10 else {}
    for k in range(n_classes):
        ax.plot(epochs, per_class[:, k], linewidth=1.2 if n_classes <= 10 else 0.5,
                color=colors(k if n_classes <= 10 else k / (n_classes - 1)), **style,
                label=(f"{k}: {classes[k]}" if classes else f"class {k}")
                if n_classes <= 10 else None)
    if history.get(f"{prefix}accuracy"):
        ax.plot(epochs, np.asarray(history[f"{prefix}accuracy"], dtype=float), "k--",
                linewidth=2, label="all classes", **curve_style(len(epochs)))
    kind = "validation" if prefix else "training"
    ax.set(title=title or f"Per-class {kind} accuracy", ylabel=f"{kind} accuracy",
           ylim=(-0.02, 1.02))
    epoch_axis(ax, len(epochs))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return fig


def plot_feedback_angles(runs: list[SavedRun], out_dir: Path) -> list[Path]:
    """The angles of the runs with feedback per epoch, mean over seeds: for each
    dataset/architecture/rule/kind whose histories hold them, a panel of the weight
    angles and one of the update angles, one line per layer.  No file when no run has
    angles."""
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for run in runs:
        if run.history and any(key.split("/")[0] in ANGLES and values
                               for key, values in run.history.items()):
            groups.setdefault((*run.config, run.feedback), []).append(run.history)
    if not groups:
        return []
    keys = sorted(groups, key=_row_rank)
    fig, axes = plt.subplots(len(keys), len(ANGLES), figsize=(11, 3.8 * len(keys) + 0.4),
                             squeeze=False, layout="constrained")
    for row, key in zip(axes, keys, strict=True):
        histories = groups[key]
        for ax, angle, what in zip(row, ANGLES, ("weights W and feedback B",
                                                 "update and backpropagation's"), strict=True):
            _plot_angle(ax, histories, angle)
            # Two lines: the run's name and the angle, so that neighbours' titles never meet.
            ax.set(title=f"{' '.join(key)} ({plural(len(histories), 'seed')})\n{what}",
                   ylabel=f"{angle.replace('_', ' ')} (degrees)")
            ax.title.set_fontsize("medium")
    fig.suptitle("Alignment with the paper's symmetric feedback, mean over seeds (0: aligned)")
    return _save_figure(fig, out_dir, "feedback_angles")


def _plot_angle(ax, histories: list[dict], angle: str) -> None:
    """One line per layer: `angle/<layer>` per epoch, mean over the histories that hold it."""
    layers = list(dict.fromkeys(key.split("/", 1)[1] for history in histories
                                for key, values in history.items()
                                if key.startswith(f"{angle}/") and values))
    length = 1
    for layer in layers:
        curves = [history[f"{angle}/{layer}"] for history in histories
                  if history.get(f"{angle}/{layer}")]
        epochs, mean, _ = curve_band(curves)
        length = max(length, len(epochs))
        ax.plot(epochs, mean, linewidth=1.2, label=layer, **curve_style(len(epochs)))
    epoch_axis(ax, length)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if layers:
        legend_below(ax, ncols=min(4, len(layers)))
    else:  # `direct` has no B to compare with W
        ax.text(0.5, 0.5, "not measured for this kind", ha="center", va="center",
                transform=ax.transAxes)


# --- the command --------------------------------------------------------------------------


def write_report(
    runs_dir: str | Path, out_dir: str | Path | None = None, class_run: str | None = None
) -> list[Path]:
    """Write the tables and figures for the runs in `runs_dir`; return the files written."""
    runs = load_runs(runs_dir)
    if not runs:
        if any(Path(runs_dir).glob("*_summary.json")):
            raise BrainPropError(f"no finished run in {runs_dir}, only the runs ignored above: "
                                 "resume them (the same command with --resume) first")
        raise BrainPropError(
            f"no *_summary.json in {runs_dir}: run main.py with -s --output-dir {runs_dir} first"
        )
    diverged = [run for run in runs if run.diverged]
    for run in diverged:
        print(f"report: {run.path.name} diverged (no epoch with a finite validation "
              "accuracy); left out of the tables and figures", file=sys.stderr)
    runs = [run for run in runs if not run.diverged]
    out = Path(out_dir) if out_dir is not None else Path(runs_dir) / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
        rows, compared = table_rows(runs), feedback_rows(runs)
        written = [out / "tables.md", out / "tables.csv"]
        markdown = markdown_tables(rows)
        if compared:
            markdown += "\n" + markdown_feedback(compared)
        if diverged:
            names = ", ".join(run.path.name.removesuffix("_summary.json") for run in diverged)
            markdown += f"\nLeft out: {names} (diverged, no finite validation accuracy).\n"
        write_atomically(written[0], lambda p: p.write_text(markdown))
        write_atomically(written[1], lambda p: p.write_text(csv_tables(rows)))
        if compared:
            written.append(out / "feedback.csv")
            write_atomically(written[-1], lambda p: p.write_text(csv_feedback(compared)))
        written += plot_figure5(runs, out)
        chosen = class_discovery_run(runs, class_run)
        if chosen is not None:
            written += plot_class_discovery(chosen, out)
        written += plot_feedback_angles(runs, out)
    except OSError as error:
        raise BrainPropError(
            f"cannot write the report into {out} ({error.strerror or error}): "
            "choose another folder with --out"
        ) from None
    return written


# How this command can be started, and what its errors say when it was not started so.
STARTED_AS = ("brainprop-report", "brainprop.report", "brainprop.tables.report")
REPORT = module_invocation("report", "brainprop.report")


def build_parser(prog: str = "python -m brainprop.report") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Tables 1 and 2 and Figure 5 of the paper from a folder of runs "
        "(the *_summary.json and *_history.pkl that main.py -s writes), and the comparison "
        "of feedback kinds where runs used --feedback.",
    )
    parser.add_argument("runs_dir", help="the folder of runs")
    parser.add_argument("--out", help="where to write the report (default: RUNS_DIR/report)")
    parser.add_argument("--class-run", metavar="STEM",
                        help="the run for the class-discovery plot, e.g. "
                        "MNIST_dense_BrainProp_seed1 (default: BrainProp on the first network)")
    return parser


def main(argv: list[str] | None = None) -> int:
    invoked = invoked_as(STARTED_AS, REPORT)
    args = build_parser(invoked.name).parse_args(argv)

    def report() -> int:
        written = write_report(args.runs_dir, args.out, args.class_run)
        print(f"Report: {', '.join(p.name for p in written)} in {written[0].parent}")
        return 0

    return run_command(invoked.name, report)


if __name__ == "__main__":
    sys.exit(main())
