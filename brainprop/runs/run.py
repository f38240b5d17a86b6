"""Carrying out runs: `run_one(config)` trains or evaluates one seed, `run_all` several.

Everything a user can get wrong is checked before Keras starts a backend: each config
is planned (`brainprop.runs.plan`), its files and weights checked, and the data set
loaded once for all seeds.  Only then does Keras start, and `brainprop.runs.execution`
builds, trains and saves each seed's run.  With `-s` every run writes its files
(`brainprop.runs.outputs`) and a summary derived from its `RunPlan`.

No Keras here: `--print-config` and every refusal come before a backend starts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import brainprop.data
from brainprop.nets.architectures import check_input
from brainprop.nets.weights import check_weight_file
from brainprop.runs.outputs import (
    RunFiles,
    check_not_held,
    check_settings,
    check_writable,
    find_unfinished,
)
from brainprop.runs.plan import RunPlan, plan_runs
from brainprop.runs.runconfig import MAIN_PY, RunConfig
from brainprop.utils import backend
from brainprop.utils.errors import BrainPropError
from brainprop.utils.invocation import Invocation
from brainprop.utils.placement import check_can_distribute
from brainprop.utils.signals import EXIT_CODES, raise_if_stopped
from brainprop.utils.stats import mean_std


def run_one(config: RunConfig, command: str | None = None) -> int:
    """Train (or evaluate) one run; 0, or the exit status of the signal that stopped it."""
    return run_all([config], command)


def run_all(configs: Sequence[RunConfig], command: str | None = None,
            invocation: Invocation = MAIN_PY) -> int:
    """Run `configs` (the seeds of one dataset, architecture and rule) one after another.

    `command` is recorded in each summary as the command line that started the runs
    (default: the one that runs each config alone), `invocation` says how it was
    started (`brainprop`, `python main.py`, ...).  Stops at the first interrupted
    run and returns the exit status of its signal, after saying how to continue it;
    0 when every run is complete, even if a signal came while the last one was saved.
    """
    if len({(c.dataset, c.data_dir, c.class_order, c.image_size) for c in configs}) > 1:
        raise ValueError("run_all runs the seeds of one data set")
    plans = plan_runs(configs, command, invocation)
    note = check_backend(plans)
    if note:
        print(note, flush=True)
    first = plans[0]
    if first.config.tensorboard:
        _check_tensorboard()
    if first.config.load:
        check_weight_file(first.config.load)
    elif first.output_dir is not None:
        check_writable(first.output_dir)
        if first.config.resume:
            _check_resumable(plans)
        else:
            _say_which_can_be_resumed(plans)

    # Through the package: `brainprop.data`'s public surface, resolved at the call.
    data = brainprop.data.load_dataset(first.dataset, first.config.data_dir,
                                       first.config.class_order, first.image_size)
    check_input(first.config.architecture, data.input_shape, data.n_classes)  # before training
    backend.start()  # Keras starts here, with its start-up messages filtered
    # Imported once the backend has started: the module that builds and trains imports Keras.
    from brainprop.runs import execution

    results = []
    for number, plan in enumerate(plans, start=1):
        raise_if_stopped()  # a Ctrl-C while loading, or during the previous seed's save
        if len(plans) > 1:
            print(f"=== Seed {plan.config.seed} ({number} of {len(plans)}) ===", flush=True)
        result, resumable = execution.run_seed(plan, data)
        interrupted_by = result.interrupted_by if result is not None else None
        if result is not None and interrupted_by is None:
            results.append(result)
        if interrupted_by is not None:
            _say_how_to_continue(plan, resumable)
            return EXIT_CODES.get(interrupted_by, 1)
    if len(plans) > 1 and results:
        print(seeds_summary(results))
    # A signal during the last save changed nothing: every run is complete, and says so.
    return 0


def _say_how_to_continue(plan: RunPlan, resumable: bool) -> None:
    if resumable:
        print(f"Interrupted. To continue: {plan.resume_command()}", flush=True)
    elif plan.config.saves:
        print("Interrupted before the first epoch ended; nothing was saved", flush=True)
    else:
        print("Interrupted; nothing was saved (run with -s to be able to resume)", flush=True)


def _say_which_can_be_resumed(plans: Sequence[RunPlan]) -> None:
    """One line for each run started anew although an interrupted run of its name waits
    (no process training it): how to continue that one instead.  Both are kept."""
    for plan in plans:
        try:
            files = find_unfinished(plan.output_dir, plan.name)
            check_not_held(files)
        except BrainPropError:  # none waits, or a process trains it now
            continue
        print(f"{files.stem.name} in {files.stem.parent} was interrupted and can be resumed "
              f"with: {plan.resume_command()}; starting a new run beside it", flush=True)


def check_backend(plans: Sequence[RunPlan]) -> str | None:
    """Settle the backend of planned runs before anything starts; the note that says
    which backend was picked, when none was named (`brainprop.utils.backend.choose`)."""
    note = backend.choose()
    if any(plan.config.distribute for plan in plans):
        check_can_distribute(backend.name())
    return note


def _check_resumable(plans: Sequence[RunPlan]) -> None:
    """Each run to resume waits in its folder, was started with the settings given,
    and no process trains it now: refused before the data are loaded."""
    for plan in plans:
        files = find_unfinished(plan.output_dir, plan.name)
        check_not_held(files)
        check_settings(files, plan.hyperparameters.settings())


def seeds_summary(results: Sequence) -> str:
    """`Over 3 seeds: best validation accuracy 0.9812 (0.0012), best epoch 12.3 (2.1)`.

    Mean and sample standard deviation (ddof=1), as in the paper's tables and the report.
    """
    accuracy = mean_std([r.best_val_accuracy for r in results])
    epoch = mean_std([r.best_epoch for r in results])
    return (f"Over {len(results)} seeds: best validation accuracy {accuracy[0]:.4f} "
            f"({accuracy[1]:.4f}), best epoch {epoch[0]:.1f} ({epoch[1]:.1f}), mean (std)")


def _check_tensorboard() -> None:
    if not backend.installed("tensorboard"):
        raise BrainPropError("--tensorboard needs the tensorboard package: "
                             "pip install tensorboard (or drop --tensorboard)")
    if not backend.installed("tensorflow"):  # Keras' TensorBoard callback writes through it
        raise BrainPropError("--tensorboard writes its summaries with TensorFlow, under any "
                             "backend: pip install tensorflow (or drop --tensorboard)")


def describe(configs: Sequence[RunConfig], invocation: Invocation = MAIN_PY) -> dict:
    """Every hyperparameter and path the runs of `configs` would use (`--print-config`),
    their commands as `invocation` starts them.

    Checks what can be checked without reading data; writes nothing.  The note on the
    backend picked, if any, goes to stderr: stdout is the JSON alone.
    """
    plans = plan_runs(configs, invocation=invocation)
    note = check_backend(plans)
    if note:
        print(note, file=sys.stderr, flush=True)
    keras = backend.start()

    first, options = plans[0], plans[0].config
    absolute = lambda path: str(Path(path).expanduser().resolve()) if path else None  # noqa: E731
    runs = []
    for plan in plans:
        config = plan.config
        stem = Path(absolute(config.output_dir)) / plan.name
        runs.append({
            "seed": config.seed,
            "files": {kind: str(path) for kind, path in RunFiles(stem, plan.alignment).outputs().items()}
            if config.saves and not config.load else None,
            "tensorboard": absolute(Path(config.tensorboard) / plan.name)
            if config.tensorboard else None,
            "command": plan.command,
        })
    return {
        "dataset": first.dataset.name,
        "architecture": options.architecture,
        "algorithm": first.rule.name,
        "paper_combination": first.paper_combination,
        "mode": "evaluate weights" if options.load else "train",
        "backend": keras.backend.backend(),
        "hyperparameters": first.hyperparameters.as_dict(),
        "class_order": options.class_order,
        "image_size": options.image_size,
        "validation": f"{options.validation_split:g} of the training set held out"
        if options.validation_split else "test set",
        "data": absolute(options.data_dir) or (
            absolute(options.dataset) if not first.dataset.declared
            else "keras.datasets (downloaded once to ~/.keras/datasets)"),
        "weights": absolute(options.load),
        "output_dir": absolute(options.output_dir) if options.saves else None,
        "resume": options.resume,
        "verbose": options.verbose,
        "runs": runs,
        "note": "files: the names a first run gets; a run of the same name already there "
        "gets _2, _3, ... instead",
    }
