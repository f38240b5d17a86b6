"""Reproduce a table of the paper in one command, then write the report.

    python -m brainprop.reproduce table1 --seeds 1-10 --runs-dir runs [--data-dir D]
    python -m brainprop.reproduce table2 --seeds 1-10 --runs-dir runs --only CIFAR10/deep

Runs every configuration of the table (both rules) for every seed, one after another in
this process, as `main.py -s` would (so each run writes its usual files); every option
of `main.py` that is not about which run or where (`--epochs`, `--data-dir`, ...) is
passed on to every run.  A run whose
summary is already in the runs folder is skipped: stop and start again at will, or split
the work across machines by giving each its own `--only` or `--seeds` and one shared (or
later merged) runs folder.  Progress is printed before each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from brainprop.architectures import ALGORITHMS
from brainprop.config import RunConfig, parse_seeds
from brainprop.errors import BrainPropError, Parser, run_command
from brainprop.paper import TABLES

Config = tuple[str, str, str]  # dataset, architecture, algorithm


def configurations(table: str, only: list[str] | None = None) -> list[Config]:
    """The table's (dataset, architecture, algorithm) runs, in the paper's order.

    `only` keeps those matching one of its entries, `DATASET/ARCH/RULE` or
    `DATASET/ARCH` (both rules); an entry matching nothing in the table is an error.
    """
    configs = [(d, a, alg) for d, a in TABLES[table] for alg in ALGORITHMS]
    if not only:
        return configs
    kept = []
    for entry in only:
        parts = tuple(entry.split("/"))
        matching = [c for c in configs if c[: len(parts)] == parts and len(parts) >= 2]
        if not matching:
            rows = ", ".join(f"{d}/{a}" for d, a in TABLES[table])
            raise BrainPropError(
                f"--only {entry} is not in {table}; give DATASET/ARCH or DATASET/ARCH/RULE "
                f"with RULE {' or '.join(ALGORITHMS)}, from: {rows}"
            )
        kept += [c for c in matching if c not in kept]
    return [c for c in configs if c in kept]


def format_duration(seconds: float) -> str:
    """`h:mm:ss`."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Progress:
    """Runs done out of the total, time so far and an estimate of the time left.

    The estimate prices each run left at the mean time of this session's finished runs
    of the same configuration, or of all its finished runs when that one has none yet.
    """

    def __init__(self, total: int, done: int):
        self.total, self.done = total, done
        self.started = time.monotonic()
        self.seconds: dict[Config, list[float]] = {}

    def finished(self, config: Config, seconds: float) -> None:
        self.done += 1
        self.seconds.setdefault(config, []).append(seconds)

    def estimate_left(self, remaining: list[Config]) -> float | None:
        every = [s for times in self.seconds.values() for s in times]
        if not every:
            return None
        overall = sum(every) / len(every)
        return sum(
            sum(self.seconds[c]) / len(self.seconds[c]) if c in self.seconds else overall
            for c in remaining
        )

    def line(self, remaining: list[Config]) -> str:
        left = self.estimate_left(remaining)
        return (
            f"{self.done}/{self.total} runs done, "
            f"{format_duration(time.monotonic() - self.started)} elapsed, "
            + ("time left unknown until a run finishes" if left is None
               else f"about {format_duration(left)} left")
        )


def _done_runs(runs_dir) -> dict[tuple, dict]:
    from brainprop.report import load_runs

    return {(*run.config, run.summary["seed"]): run.summary for run in load_runs(runs_dir)}


def reproduce(args: argparse.Namespace) -> int:
    """Run what is missing of the table, then write the report; the runs' exit status."""
    from brainprop.outputs import check_writable
    from brainprop.run import run

    runs_dir = check_writable(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    configs = configurations(args.table, args.only)
    done = _done_runs(runs_dir)
    plan = [(config, seed) for seed in args.seeds for config in configs]
    todo = [(config, seed) for config, seed in plan if (*config, seed) not in done]
    for config, seed in plan:
        kept = done.get((*config, seed))
        ran = kept and kept.get("hyperparameters", {}).get("max_epochs")
        if ran and ran != args.epochs:
            print(f"[reproduce] keeping {' '.join(config)} seed {seed}, which ran with at most "
                  f"{ran} epochs (asked: {args.epochs}); use another --runs-dir to redo it")
    progress = Progress(len(plan), len(plan) - len(todo))
    print(f"[reproduce] {args.table}: {len(plan)} runs, {len(plan) - len(todo)} already done",
          flush=True)
    for index, (config, seed) in enumerate(todo):
        print(f"[reproduce] {progress.line([c for c, _ in todo[index:]])}; "
              f"now {' '.join(config)} seed {seed}", flush=True)
        started = time.monotonic()
        status = run(child_config(args, config, seed, runs_dir))
        if status != 0:
            return status
        progress.finished(config, time.monotonic() - started)
    print(f"[reproduce] {progress.line([])}", flush=True)
    if not args.no_report:
        from brainprop.report import write_report

        written = write_report(runs_dir, args.report_dir)
        print(f"[reproduce] report: {', '.join(p.name for p in written)} in {written[0].parent}")
    return 0


def child_config(args: argparse.Namespace, config: Config, seed: int, runs_dir: Path) -> RunConfig:
    """The run of `config` and `seed`: saved in the runs folder, resumed if unfinished,
    with every option given to reproduce that main.py takes."""
    dataset, architecture, algorithm = config
    child = RunConfig(dataset, architecture, algorithm, save=True, seed=seed,
                      output_dir=str(runs_dir), **RunConfig.forwarded(args))
    return dataclasses.replace(child, resume=_unfinished(child))


def _unfinished(child: RunConfig) -> bool:
    """Whether an interrupted or crashed run of this seed waits in the folder."""
    from brainprop.outputs import find_unfinished

    try:
        find_unfinished(Path(child.output_dir), child.name)
    except BrainPropError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m brainprop.reproduce",
        description="Run every configuration of Table 1 or 2 of the paper for the given "
        "seeds (skipping runs already in --runs-dir), then write the report.",
    )
    parser.add_argument("table", choices=list(TABLES), help="table1: dense, conv, loccon on "
                        "MNIST, CIFAR10, CIFAR100; table2: deep on CIFAR10, CIFAR100, "
                        "TinyImageNet")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-10"),
                        help="seeds: 1-10, 1,3,5 or 7 (default: 1-10, as the paper)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where the runs write and are looked for (default: runs)")
    parser.add_argument("--only", nargs="+", metavar="DATASET/ARCH[/RULE]",
                        help="run only these rows of the table, e.g. CIFAR10/conv/BrainProp")
    parser.add_argument("--report-dir", help="where the report goes (default: RUNS_DIR/report)")
    parser.add_argument("--no-report", action="store_true", help="run, but write no report")
    passed_on = parser.add_argument_group("options passed on to every run (see main.py --help)")
    RunConfig.add_arguments(passed_on, forwarded_only=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("reproduce", lambda: reproduce(args))


if __name__ == "__main__":
    sys.exit(main())
