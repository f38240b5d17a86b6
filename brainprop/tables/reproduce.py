"""Reproduce a table of the paper in one command, then write the report.

    python -m brainprop.reproduce table1 --seeds 1-10 --runs-dir runs [--data-dir D]
    python -m brainprop.reproduce table2 --seeds 1-10 --runs-dir runs --only CIFAR10/deep
    python -m brainprop.reproduce feedback --only MNIST/conv --feedback-kinds symmetric,random

    python -m brainprop.reproduce table1 --jobs 4 --gpus 0,1      # 4 runs at once, 2 GPUs
    python -m brainprop.reproduce table2 --executor slurm --gpus-per-run 1 --time-limit 240

Runs every configuration of the table (both rules; for the feedback table, both rules
with every kind of feedback asked for, on one data set and network) for every seed,
each run its own
`main.py -s` process (so each run writes its usual files, and its output goes to
RUNS_DIR/logs/), `--jobs` of them at once, or as one SLURM job array (`brainprop.runs.jobs`).
Every option of `main.py` that is not about which run or where (`--epochs`, `--data-dir`,
...) is passed on to every run.  A run whose summary is already in the runs folder is
skipped, and an interrupted one resumed: stop and start again at will.  Every data set is
read once before the first run starts; a failing run does not stop the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from brainprop.data import DatasetSpec, load_dataset
from brainprop.model.feedback import DEFAULT_FEEDBACK, FEEDBACK
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.runs.jobs import (
    PlannedRun,
    Progress,
    SlurmOptions,
    array_id,
    check_slurm,
    parse_gpus,
    run_locally,
    submit_to_slurm,
    visible_gpus,
    wait_for_slurm,
)
from brainprop.runs.outputs import check_writable, find_unfinished
from brainprop.runs.plan import RunPlan, plan_run
from brainprop.runs.run import check_backend
from brainprop.runs.runconfig import RunConfig, parse_seeds, positive
from brainprop.tables.paper import FEEDBACK_TABLE, TABLE_SPECS, TABLES
from brainprop.tables.report import load_runs, write_report
from brainprop.utils.errors import EXIT_INTERRUPTED, BrainPropError, Parser, plural, run_command
from brainprop.utils.invocation import invoked_as, module_invocation

Config = tuple[str, str, str]  # dataset, architecture, algorithm

# How this command can be started, and what its errors say when it was not started so.
STARTED_AS = ("brainprop-reproduce", "brainprop.reproduce", "brainprop.tables.reproduce")
REPRODUCE = module_invocation("reproduce", "brainprop.reproduce")


def configurations(table: str, only: list[str] | None = None) -> list[Config]:
    """The table's (dataset, architecture, algorithm) runs, in the paper's order.

    `only` keeps those matching one of its entries, `DATASET/ARCH/RULE` or
    `DATASET/ARCH` (every rule); an entry matching nothing in the table is an error.
    The feedback table is every rule on the one `DATASET/ARCH` that `only` must name.
    """
    if TABLE_SPECS[table].compares_feedback:
        return [(*chosen_row(table, only), algorithm) for algorithm in RULES]
    configs = [(d, a, alg) for d, a in TABLES[table] for alg in RULES]
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
                f"with RULE {' or '.join(RULES)}, from: {rows}"
            )
        kept += [c for c in matching if c not in kept]
    return [c for c in configs if c in kept]


def chosen_row(table: str, only: list[str] | None) -> tuple[str, str]:
    """The (dataset, architecture) of a table of the user's choice: `only`'s one entry
    `DATASET/ARCH` (a data set given as a path may hold slashes)."""
    example = "give one --only DATASET/ARCH, e.g. --only MNIST/conv"
    which = f"{table} compares the kinds of feedback on one data set and network"
    if not only:
        raise BrainPropError(f"{which}: {example}")
    if len(only) > 1:
        raise BrainPropError(f"--only {' '.join(only)} names {len(only)} rows; {which}: {example}")
    dataset, _, architecture = only[0].rpartition("/")
    if not dataset or architecture not in ARCHITECTURES:
        raise BrainPropError(f"--only {only[0]} is not DATASET/ARCH ({table} runs every rule): "
                             f"{example}, ARCH one of {', '.join(ARCHITECTURES)}")
    return dataset, architecture


def parse_feedback_kinds(text: str) -> list[str]:
    """An argparse type: kinds of feedback, `symmetric,random` (each once, in that order)."""
    kinds = [kind.strip() for kind in text.split(",")]
    for kind in kinds:
        if kind not in FEEDBACK:
            raise argparse.ArgumentTypeError(
                f"{kind!r} is not a kind of feedback: give some of {','.join(FEEDBACK)}")
    return list(dict.fromkeys(kinds))


def feedback_kinds(args: argparse.Namespace) -> list[str]:
    """The kinds of feedback the table's runs use: those `--feedback-kinds` names (default
    every one) for the feedback table, the one `--feedback` names for the paper's."""
    if TABLE_SPECS[args.table].compares_feedback:
        if args.feedback != DEFAULT_FEEDBACK:
            raise BrainPropError(f"{args.table} runs the kinds --feedback-kinds names (default: "
                                 f"all of them), not --feedback: drop --feedback {args.feedback}")
        return args.feedback_kinds or list(FEEDBACK)
    if args.feedback_kinds:
        raise BrainPropError(f"--feedback-kinds is for the {FEEDBACK_TABLE} table; {args.table} "
                             "runs the one kind --feedback names (default: symmetric)")
    return [args.feedback]


def _done_runs(runs_dir) -> dict[tuple, dict]:
    """The summaries of the finished runs, by (dataset, architecture, algorithm, feedback,
    seed)."""
    return {run.identity: run.summary for run in load_runs(runs_dir)}


SLURM_OPTIONS = ("partition", "time_limit", "gpus_per_run", "cpus_per_run",
                 "array_parallelism", "wait")


def _check_executor(args: argparse.Namespace) -> list[str]:
    """The options that fit the executor, or a one-line error; the GPUs to use."""
    if args.executor == "slurm":
        if args.jobs is not None or args.gpus is not None:
            raise BrainPropError(
                "--jobs and --gpus are for --executor local; on SLURM give "
                "--array-parallelism and --gpus-per-run"
            )
        check_slurm()
        return []
    given = [f"--{name.replace('_', '-')}" for name in SLURM_OPTIONS
             if getattr(args, name) not in (None, False)]
    if given:
        raise BrainPropError(f"{', '.join(given)} only apply to --executor slurm: add it, or "
                             "drop them")
    return visible_gpus() if args.gpus is None else parse_gpus(args.gpus)


def check_data(datasets: Sequence[DatasetSpec], data_dir: str | None) -> None:
    """Read every data set the runs need, once, before the first run starts."""
    for dataset in {spec.name: spec for spec in datasets}.values():
        print(f"[reproduce] checking {dataset.name}", flush=True)
        load_dataset(dataset, data_dir, None)


def _child(args: argparse.Namespace, config: Config, seed: int, runs_dir: Path,
           feedback: str | None = None) -> RunConfig:
    """The run of `config` and `seed`, saved in the runs folder, with every option given
    to reproduce that main.py takes; with `feedback`, that kind instead of --feedback's."""
    dataset, architecture, algorithm = config
    options = RunConfig.forwarded(args)
    if feedback is not None:
        options["feedback"] = feedback
    return RunConfig(dataset, architecture, algorithm, save=True, seed=seed,
                     output_dir=str(runs_dir), **options)


def child_config(args: argparse.Namespace, config: Config, seed: int, runs_dir: Path,
                 feedback: str | None = None) -> RunConfig:
    """The run of `config` and `seed` (`_child`), resumed if unfinished."""
    child = _child(args, config, seed, runs_dir, feedback)
    return dataclasses.replace(child, resume=_unfinished(plan_run(child)))


def _unfinished(plan: RunPlan) -> bool:
    """Whether an interrupted or crashed run of this seed waits in the folder."""
    try:
        find_unfinished(plan.output_dir, plan.name)
    except BrainPropError:
        return False
    return True


def _job_run(args: argparse.Namespace, runs_dir: Path, config: Config, feedback: str,
             seed: int) -> PlannedRun:
    """The run as `brainprop.runs.jobs` takes it: whether it resumes is decided each time it
    starts (a SLURM task requeued mid-run resumes)."""
    child = _child(args, config, seed, runs_dir, feedback)
    name = plan_run(child).name
    return PlannedRun(name, tuple(child.argv()), runs_dir, runs_dir / "logs" / f"{name}.log",
                      kind=_described(config, feedback))


def _described(config: Config, feedback: str) -> str:
    """`MNIST conv BrainProp`, and the kind of feedback where it is not the paper's."""
    return " ".join([*config, *([feedback] if feedback != DEFAULT_FEEDBACK else [])])


def reproduce(args: argparse.Namespace) -> int:
    """Run what is missing of the table, then write the report.

    0 when every run finished, 1 when some failed (the report covers those that did).
    """
    # Every run starts the backend settled here (a picked one through KERAS_BACKEND).
    configs = configurations(args.table, args.only)
    kinds = feedback_kinds(args)
    rows = {config: plan_run(RunConfig(*config, save=True, **RunConfig.forwarded(args)))
            for config in configs}
    note = check_backend(list(rows.values()))
    if note:
        print(f"[reproduce] {note}", flush=True)
    gpus = _check_executor(args)
    runs_dir = check_writable(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    done = _done_runs(runs_dir)
    plan = [(config, kind, seed) for seed in args.seeds for config in configs for kind in kinds]
    todo = [(config, kind, seed) for config, kind, seed in plan
            if (*config, kind, seed) not in done]
    for config, kind, seed in plan:
        kept = done.get((*config, kind, seed))
        ran = kept and kept.get("hyperparameters", {}).get("max_epochs")
        if ran and ran != args.epochs:
            print(f"[reproduce] keeping {_described(config, kind)} seed {seed}, which ran with "
                  f"at most {ran} epochs (asked: {args.epochs}); use another --runs-dir to redo it")
    print(f"[reproduce] {args.table}: {plural(len(plan), 'run')}, {len(plan) - len(todo)} already done",
          flush=True)
    check_data([rows[config].dataset for config, _, _ in todo], args.data_dir)
    runs = [_job_run(args, runs_dir, config, kind, seed) for config, kind, seed in todo]
    if args.executor == "slurm":
        failures = _on_slurm(args, runs, runs_dir)
        if failures is None:
            return 0
    else:
        jobs = args.jobs or 1
        progress = Progress(len(plan), jobs, done=len(plan) - len(todo))
        try:
            failures = run_locally(runs, jobs, gpus, prefix="[reproduce]", progress=progress)
        except KeyboardInterrupt:
            print("[reproduce] interrupted: the runs that were training keep their backups; "
                  "the same command continues them", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"[reproduce] {progress.line()}", flush=True)
    for failure in failures:
        print(f"[reproduce] {failure.line()}", file=sys.stderr)
    if not args.no_report and len(failures) < len(plan):
        written = write_report(runs_dir, args.report_dir)
        print(f"[reproduce] report: {', '.join(p.name for p in written)} in {written[0].parent}")
    if failures:
        print(f"[reproduce] {len(failures)} of {len(runs)} runs failed (above); the same "
              "command runs them again", file=sys.stderr)
        return 1
    return 0


def _on_slurm(args: argparse.Namespace, runs: list, runs_dir: Path):
    """Submit the runs as one job array; with --wait, the failures, else None."""
    report = f"python -m brainprop.report {runs_dir}"
    if not runs:
        return []
    options = SlurmOptions(
        partition=args.partition,
        time_limit_min=args.time_limit or SlurmOptions.time_limit_min,
        gpus_per_run=args.gpus_per_run or 0,
        cpus_per_run=args.cpus_per_run or 1,
        array_parallelism=args.array_parallelism,
    )
    jobs = submit_to_slurm(runs, runs_dir / "slurm", options)
    job = array_id(jobs)
    print(f"[reproduce] submitted job array {job}: {plural(len(runs), 'run')}, one task each; logs in "
          f"{runs_dir / 'logs'}; watch with: squeue -j {job}", flush=True)
    if not args.wait:
        print(f"[reproduce] when it has ended, write the report with: {report}")
        return None
    try:
        return wait_for_slurm(runs, jobs, prefix="[reproduce]",
                              parallelism=args.array_parallelism)
    except KeyboardInterrupt:
        print(f"[reproduce] stopped waiting; job array {job} goes on; when it has ended: "
              f"{report}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def build_parser(prog: str = "python -m brainprop.reproduce") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Run every configuration of Table 1 or 2 of the paper, or of the "
        "comparison of feedback kinds, for the given seeds (skipping runs already in "
        "--runs-dir), then write the report.",
    )
    parser.add_argument("table", choices=list(TABLE_SPECS), help="; ".join(
        f"{table}: {spec.contents}" for table, spec in TABLE_SPECS.items()))
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-10"),
                        help="seeds: 1-10, 1,3,5 or 7 (default: 1-10, as the paper)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where the runs write and are looked for (default: runs)")
    parser.add_argument("--only", nargs="+", metavar="DATASET/ARCH[/RULE]",
                        help="run only these rows of the table, e.g. CIFAR10/conv/BrainProp; "
                        f"for {FEEDBACK_TABLE}, the one data set and network, e.g. MNIST/conv")
    parser.add_argument("--feedback-kinds", type=parse_feedback_kinds, metavar="KIND,...",
                        help=f"{FEEDBACK_TABLE}: the kinds of feedback to compare, of "
                        f"{','.join(FEEDBACK)} (default: all)")
    parser.add_argument("--report-dir", help="where the report goes (default: RUNS_DIR/report)")
    parser.add_argument("--no-report", action="store_true", help="run, but write no report")
    passed_on = parser.add_argument_group("options passed on to every run (see main.py --help)")
    RunConfig.add_arguments(passed_on, forwarded_only=True)
    local = parser.add_argument_group(
        "on this machine (--executor local)",
        "every run is its own process; a failing run does not stop the others")
    local.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local: processes on this machine (default); slurm: one SLURM "
                       "job array, one task per run, through submitit")
    local.add_argument("--jobs", type=positive(int), metavar="N",
                       help="run N runs at once (default: 1); with GPUs they are handed out "
                       "round-robin, otherwise the CPU cores are shared out")
    local.add_argument("--gpus", metavar="0,2,3",
                       help="the GPUs to use (default: every GPU nvidia-smi lists, or those "
                       "in CUDA_VISIBLE_DEVICES); several runs may share one")
    slurm = parser.add_argument_group("on a SLURM cluster (--executor slurm)")
    slurm.add_argument("--partition", help="the partition to submit to (default: the "
                       "cluster's)")
    slurm.add_argument("--time-limit", type=positive(int), metavar="MINUTES",
                       help="time limit of each task (default: 1440); a run still training "
                       "at its limit is requeued and resumes where it stopped")
    slurm.add_argument("--gpus-per-run", type=positive(int), metavar="N",
                       help="GPUs per task (default: none)")
    slurm.add_argument("--cpus-per-run", type=positive(int), metavar="N",
                       help="CPUs per task (default: 1)")
    slurm.add_argument("--array-parallelism", type=positive(int), metavar="N",
                       help="at most N tasks at once (default: as many as SLURM allows)")
    slurm.add_argument("--wait", action="store_true",
                       help="wait for every task, then write the report (default: print the "
                       "job id and the command that writes the report later)")
    return parser


def main(argv: list[str] | None = None) -> int:
    invoked = invoked_as(STARTED_AS, REPRODUCE)
    args = build_parser(invoked.name).parse_args(argv)
    return run_command(invoked.name, lambda: reproduce(args))


if __name__ == "__main__":
    sys.exit(main())
