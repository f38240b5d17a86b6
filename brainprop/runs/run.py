"""Carrying out runs: `run_one(config)` trains or evaluates one seed, `run_all` several.

Everything a user can get wrong is checked before Keras starts a backend; the
data set is loaded once for all seeds.  Each seed is one `Run`, made once when it
starts: what the later steps (build, train, save) read.  With `-s` every run
writes its files (`brainprop.runs.outputs`) and a summary derived from its
`RunConfig` and `Hyperparameters`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainprop.data.datasets import DATASETS, dataset_name
from brainprop.runs.runconfig import Hyperparameters, RunConfig, check_runs
from brainprop.utils.errors import BrainPropError
from brainprop.utils.signals import EXIT_CODES, raise_if_stopped

if TYPE_CHECKING:
    import keras

    from brainprop.data.datasets import Dataset
    from brainprop.runs.outputs import RunFiles
    from brainprop.train.training import TrainingResult
    from brainprop.utils.placement import Placement


def run_one(config: RunConfig, command: str | None = None) -> int:
    """Train (or evaluate) one run; 0, or the exit status of the signal that stopped it."""
    return run_all([config], command)


def run_all(configs: Sequence[RunConfig], command: str | None = None) -> int:
    """Run `configs` (the seeds of one dataset, architecture and rule) one after another.

    `command` is recorded in each summary as the command line that started the runs
    (default: the one that runs each config alone).  Stops at the first interrupted
    run and returns the exit status of its signal, after saying how to continue it;
    0 when every run is complete, even if a signal came while the last one was saved.
    """
    if len({(c.dataset, c.data_dir, c.class_order) for c in configs}) > 1:
        raise ValueError("run_all runs the seeds of one data set")
    note = check_backend(configs)
    if note:
        print(note, flush=True)
    first = configs[0]
    if first.tensorboard:
        _check_tensorboard()
    output_dir = None
    if first.load:
        from brainprop.nets.weights import check_weight_file

        check_weight_file(first.load)
    elif first.saves:
        from brainprop.runs.outputs import check_writable

        output_dir = check_writable(first.output_dir)
        if first.resume:
            _check_resumable(configs, output_dir)

    from brainprop.data.datasets import dataset_spec, load_dataset

    data = load_dataset(dataset_spec(first.dataset), first.data_dir, first.class_order)
    from brainprop.nets.architectures import check_input

    check_input(first.architecture, data.input_shape, data.n_classes)  # before any training
    results = []
    for number, config in enumerate(configs, start=1):
        raise_if_stopped()  # a Ctrl-C while loading, or during the previous seed's save
        if len(configs) > 1:
            print(f"=== Seed {config.seed} ({number} of {len(configs)}) ===", flush=True)
        result, resumable = _run_one(config, data, output_dir, command or config.command())
        interrupted_by = result.interrupted_by if result is not None else None
        if result is not None and interrupted_by is None:
            results.append(result)
        if interrupted_by is not None:
            if resumable:
                resume = dataclasses.replace(config, resume=True)
                print(f"Interrupted. To continue: {resume.command()}", flush=True)
            elif config.saves:
                print("Interrupted before the first epoch ended; nothing was saved", flush=True)
            else:
                print("Interrupted; nothing was saved (run with -s to be able to resume)",
                      flush=True)
            return EXIT_CODES.get(interrupted_by, 1)
    if len(configs) > 1 and results:
        print(seeds_summary(results))
    # A signal during the last save changed nothing: every run is complete, and says so.
    return 0


def check_backend(configs: Sequence[RunConfig]) -> str | None:
    """Check `configs` and settle the backend before anything starts; the note that says
    which backend was picked, when none was named (`brainprop.utils.backend.choose`)."""
    from brainprop.utils import backend
    from brainprop.utils.placement import check_can_distribute

    check_runs(configs)
    note = backend.choose()
    if any(config.distribute for config in configs):
        check_can_distribute(backend.name())
    return note


def _check_resumable(configs: Sequence[RunConfig], output_dir: Path) -> None:
    """Each run to resume waits in `output_dir`, was started with the settings given,
    and no process trains it now: refused before the data are loaded."""
    from brainprop.runs.outputs import check_not_held, check_settings, find_unfinished

    for config in configs:
        files = find_unfinished(output_dir, config.name)
        check_not_held(files)
        check_settings(files, config.hyperparameters().settings())


def seeds_summary(results: Sequence) -> str:
    """`Over 3 seeds: best validation accuracy 0.9812 (0.0012), best epoch 12.3 (2.1)`.

    Mean and sample standard deviation (ddof=1), as in the paper's tables and the report.
    """
    from brainprop.utils.stats import mean_std

    accuracy = mean_std([r.best_val_accuracy for r in results])
    epoch = mean_std([r.best_epoch for r in results])
    return (f"Over {len(results)} seeds: best validation accuracy {accuracy[0]:.4f} "
            f"({accuracy[1]:.4f}), best epoch {epoch[0]:.1f} ({epoch[1]:.1f}), mean (std)")


def _check_tensorboard() -> None:
    from brainprop.utils.backend import installed

    if not installed("tensorboard"):
        raise BrainPropError("--tensorboard needs the tensorboard package: "
                             "pip install tensorboard (or drop --tensorboard)")
    if not installed("tensorflow"):  # Keras' TensorBoard callback writes through it
        raise BrainPropError("--tensorboard writes its summaries with TensorFlow, under any "
                             "backend: pip install tensorflow (or drop --tensorboard)")


def describe(configs: Sequence[RunConfig]) -> dict:
    """Every hyperparameter and path the runs of `configs` would use (`--print-config`).

    Checks what can be checked without reading data; writes nothing.  The note on the
    backend picked, if any, goes to stderr: stdout is the JSON alone.
    """
    note = check_backend(configs)
    if note:
        print(note, file=sys.stderr, flush=True)
    from brainprop.utils import backend

    keras = backend.start()
    from brainprop.runs.outputs import RunFiles

    first = configs[0]
    absolute = lambda path: str(Path(path).expanduser().resolve()) if path else None  # noqa: E731
    runs = []
    for config in configs:
        stem = Path(absolute(config.output_dir)) / config.name
        runs.append({
            "seed": config.seed,
            "files": {kind: str(path) for kind, path in RunFiles(stem).outputs().items()}
            if config.saves and not config.load else None,
            "tensorboard": absolute(Path(config.tensorboard) / config.name)
            if config.tensorboard else None,
            "command": config.command(),
        })
    return {
        "dataset": dataset_name(first.dataset),
        "architecture": first.architecture,
        "algorithm": first.algorithm,
        "paper_combination": first.paper_combination,
        "mode": "evaluate weights" if first.load else "train",
        "backend": keras.backend.backend(),
        "hyperparameters": first.hyperparameters().as_dict(),
        "class_order": first.class_order,
        "validation": f"{first.validation_split:g} of the training set held out"
        if first.validation_split else "test set",
        "data": absolute(first.data_dir) or (absolute(first.dataset) if first.dataset not in DATASETS
                                             else "keras.datasets (downloaded once to ~/.keras/datasets)"),
        "weights": absolute(first.load),
        "output_dir": absolute(first.output_dir) if first.saves else None,
        "resume": first.resume,
        "verbose": first.verbose,
        "runs": runs,
        "note": "files: the names a first run gets; a run of the same name already there "
        "gets _2, _3, ... instead",
    }


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run (one seed) carries, made once as it starts."""

    config: RunConfig
    hyperparameters: Hyperparameters  # resolved once from `config`
    command: str  # the command line the summary records
    data: Dataset  # the data set: the test set, the summary's counts
    fit_data: Dataset  # what fit trains and validates on: `data`, or a held-out split of it
    place: Placement  # the devices and dtype policy it trains with
    files: RunFiles | None = None  # with -s: claimed just before training


def _run_one(config: RunConfig, data: Dataset, output_dir: Path | None,
             command: str) -> tuple[TrainingResult | None, bool]:
    """Train (or evaluate) one seed: its TrainingResult (None when evaluating), and
    whether the run, if a signal stopped it, can be resumed."""
    from brainprop.utils import backend

    keras = backend.start()
    from brainprop.utils.devices import placement

    # A fresh session per seed: seed 2 after seed 1 trains as seed 2 alone would.
    keras.backend.clear_session()
    with placement(config.distribute, config.mixed_precision) as place:
        backend.set_random_seed(config.seed)
        run = _start(config, data, place, command)
        model = _build(run)
        if config.load:
            _evaluate(run, model)
            return None, False
        model.summary()
        print(f"Training {config.algorithm} on {data.name} ({config.architecture}): "
              f"{run.hyperparameters.line()}, seed {config.seed}, "
              f"backend {keras.backend.backend()}, {place.describe()}")
        raise_if_stopped()  # a Ctrl-C while the backend started or the model was built
        if output_dir is None:
            return _train_and_save(run, model)

        from brainprop.runs.outputs import find_unfinished, hold_run, reserve_run_files

        # The run's name is claimed only now that every check passed, just before training.
        claim = find_unfinished if config.resume else reserve_run_files
        run = dataclasses.replace(run, files=claim(output_dir, config.name))
        with hold_run(run.files):
            return _train_and_save(run, model)


def _start(config: RunConfig, data: Dataset, place: Placement, command: str) -> Run:
    """The run of `config`, once its data split over `place`'s devices is checked."""
    from brainprop.utils.placement import check_even_split

    hyperparameters = config.hyperparameters()
    fit_data = data
    if config.validation_split:  # may refuse the split: before any file is claimed
        from brainprop.train.validation import hold_out

        fit_data = hold_out(data, config.validation_split)
    check_even_split(place.replicas, hyperparameters.training.batch_size, {
        "training": len(fit_data.y_train), "validation": len(fit_data.validation[1]),
        "test": len(data.y_test),
    })
    return Run(config, hyperparameters, command, data, fit_data, place)


def _build(run: Run) -> keras.Model:
    """The run's network, compiled for its rule (weights drawn from the seeded backend)."""
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model

    config, training = run.config, run.hyperparameters.training
    architecture = dataclasses.replace(ARCHITECTURES[config.architecture],
                                       init_std=run.hyperparameters.init_std)
    rule = dataclasses.replace(RULES[config.algorithm], feedback=config.feedback)
    model = build_model(architecture, rule, run.data.input_shape, run.data.n_classes,
                        seed=config.seed, batch_size=training.batch_size)
    return compile_model(model, rule, training.learning_rate)


def _evaluate(run: Run, model: keras.Model) -> None:
    """`-l`: the test accuracy of the weight file."""
    from brainprop.nets.weights import load_weights
    from brainprop.train.training import evaluate

    load_weights(model, run.config.load)  # a file that does not fit ends here, in one line
    model.summary()
    accuracy = evaluate(model, run.data, run.hyperparameters.training.batch_size)
    print(f"Test accuracy: {accuracy:.4f}")


def _train_and_save(run: Run, model: keras.Model) -> tuple[TrainingResult, bool]:
    from brainprop.model.rules import get_rule
    from brainprop.runs.outputs import check_settings, record_settings, release_run_files
    from brainprop.train.training import train

    config, files = run.config, run.files
    training = run.hyperparameters.training
    if files is not None:
        if config.resume:
            check_settings(files, run.hyperparameters.settings())
            from brainprop.train.resume import RunBackup

            done = RunBackup(files.backup).completed_epochs()
            print(f"Resuming {files.stem.name} from epoch {done + 1} of {training.epochs} "
                  f"({done} completed)", flush=True)
        else:
            record_settings(files, run.hyperparameters.settings())
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory() as scratch:
        # A held-out validation set needs the best weights even without -s.
        best_weights = files.weights if files else None
        if config.validation_split and best_weights is None:
            best_weights = Path(scratch) / "best.weights.h5"
        result = train(
            model,
            run.fit_data,
            training,
            best_weights_path=best_weights,
            csv_log_path=files.log if files else None,
            backup_dir=files.backup if files else None,
            verbose=config.verbose,
            chance_hint_classes=run.data.n_classes
            if get_rule(config.algorithm).discovers_classes else None,
            tensorboard_dir=(Path(config.tensorboard) / (files.stem.name if files else config.name)
                             if config.tensorboard else None),
        )
        if result.interrupted_by is not None and not result.epoch_seconds and not config.resume:
            if files is not None:  # nothing to resume: the name is free again
                release_run_files(files)
            return result, False
        print(
            f"Best validation accuracy {result.best_val_accuracy:.4f} at epoch "
            f"{result.best_epoch} of {len(result.epoch_seconds)} ({result.stop_reason})"
        )
        validation = _validation_summary(run, model, best_weights)
    if files is not None:
        _save(run, model, result, started, validation)
    return result, files is not None


def _validation_summary(run: Run, model: keras.Model, best_weights: Path | None) -> dict:
    """What was validated on, and the test accuracy of the best epoch when held out."""
    split = run.config.validation_split
    if not split:
        return {"validation": "test set", "validation_split": None}
    from brainprop.train.validation import SPLIT_SEED, best_epoch_test_accuracy

    accuracy = best_epoch_test_accuracy(
        model, best_weights, run.fit_data, run.hyperparameters.training.batch_size
    )
    if accuracy is not None:
        print(f"Test accuracy at the best validation epoch: {accuracy:.4f}")
    return {
        "validation": f"{split:g} of the training set held out (split seed {SPLIT_SEED})",
        "validation_split": split,
        "validation_images": int(len(run.fit_data.y_val)),
        "train_images": int(len(run.fit_data.y_train)),
        "test_accuracy_at_best_epoch": accuracy,
    }


def summary(run: Run, model: keras.Model, result: TrainingResult) -> dict[str, Any]:
    """What the summary records of a run, times, files and validation aside."""
    import keras

    config, data = run.config, run.data
    return {
        "dataset": data.name,
        "architecture": config.architecture,
        "algorithm": config.algorithm,
        "paper_combination": config.paper_combination,
        "seed": config.seed,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "total_params": int(model.count_params()),
        "n_classes": data.n_classes,
        "train_images": int(len(data.y_train)),
        "test_images": int(len(data.y_test)),
        # Which class each output unit stands for, where the data name their classes.
        "class_order": (config.class_order or "sorted") if data.classes else None,
        "classes": list(data.classes) if data.classes else None,
        "epochs_run": len(result.epoch_seconds),
        "best_epoch": result.best_epoch,
        "best_val_accuracy": (
            result.best_val_accuracy if math.isfinite(result.best_val_accuracy) else None
        ),
        "stop_reason": result.stop_reason,
        "interrupted": result.interrupted_by is not None,
        "resumed": config.resume,
        "epoch_seconds": [round(s, 4) for s in result.epoch_seconds],
        "hyperparameters": run.hyperparameters.as_dict(),
        "config": config.as_dict(),
    }


def _save(run: Run, model: keras.Model, result: TrainingResult,
          started: datetime.datetime, validation: dict) -> None:
    """Write the run's plot, histories and summary; then drop its backup if it finished."""
    from brainprop.model.rules import get_rule
    from brainprop.runs.outputs import (
        plot_accuracy,
        write_history,
        write_history_json,
        write_summary,
    )

    config, files = run.config, run.files
    plot_accuracy(
        result.history,
        f"{run.data.name} {config.architecture} {config.algorithm}",
        get_rule(config.algorithm).training_accuracy,
        files.plot_pdf,
        files.plot_png,
    )
    write_history(files.history, run.data.name, config.algorithm, result.history)
    write_history_json(files.history_json, run.data.name, config.algorithm, result.history)
    record = summary(run, model, result)
    record.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=run.command,
        files={kind: path.name for kind, path in files.outputs().items()
               if path.exists() or kind == "summary"},
    )
    record.update(validation)
    record.update(devices=list(run.place.devices), dtype_policy=run.place.policy)
    write_summary(files.summary, record)
    if result.interrupted_by is None:
        # Only now is the run complete: until here a crash leaves it resumable.
        shutil.rmtree(files.backup, ignore_errors=True)
    print(f"Saved {', '.join(record['files'].values())} in {files.stem.parent}")
