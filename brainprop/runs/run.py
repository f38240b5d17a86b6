"""Carrying out runs: `run(config)` trains or evaluates one seed, `run_all` several.

Everything a user can get wrong is checked before Keras starts a backend; the
data set is loaded once for all seeds.  With `-s` every run writes its files
(`brainprop.runs.outputs`) and a summary derived from its `RunConfig`.
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

from brainprop.runs.config import LOAD_ALONE, RunConfig
from brainprop.utils.errors import BrainPropError
from brainprop.utils.signals import EXIT_CODES, raise_if_stopped


def run(config: RunConfig, command: str | None = None) -> int:
    """Train (or evaluate) one run; 0, or the exit status of the signal that stopped it."""
    return run_all([config], command)


def run_all(configs: Sequence[RunConfig], command: str | None = None) -> int:
    """Run `configs` (the seeds of one dataset, architecture and rule) one after another.

    `command` is recorded in each summary as the command line that started the runs
    (default: the one that runs each config alone).  Stops at the first interrupted
    run and returns the exit status of its signal, after saying how to continue it.
    """
    if len({(c.dataset, c.data_dir, c.class_order) for c in configs}) > 1:
        raise ValueError("run_all runs the seeds of one data set")
    note = check_backend(configs)
    if note:
        print(note, flush=True)
    first = configs[0]
    if first.load and len(configs) > 1:
        raise BrainPropError(LOAD_ALONE)
    if first.tensorboard:
        _check_tensorboard()
    output_dir = None
    if first.load:
        from brainprop.nets.weights import check_weight_file

        check_weight_file(first.load)
    elif first.saves:
        from brainprop.runs.outputs import check_writable

        output_dir = check_writable(first.output_dir)

    from brainprop.data.datasets import load_dataset

    data = load_dataset(first.dataset, first.data_dir, first.class_order)
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
    raise_if_stopped()  # a signal during the last save: everything is saved, but stop
    return 0


def check_backend(configs: Sequence[RunConfig]) -> str | None:
    """Check `configs` and settle the backend before anything starts; the note that says
    which backend was picked, when none was named (`brainprop.utils.backend.choose`)."""
    from brainprop.utils import backend
    from brainprop.utils.devices import check_can_distribute

    for config in configs:
        config.check()
    note = backend.choose()
    if any(config.distribute for config in configs):
        check_can_distribute(backend.name())
    return note


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
    from brainprop.nets.architectures import ARCHITECTURES, LR_SCHEDULE
    from brainprop.model import EPSILON
    from brainprop.runs.outputs import RunFiles

    first = configs[0]
    arch = ARCHITECTURES[first.architecture]
    training = first.training()
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
        "dataset": first.dataset,
        "architecture": first.architecture,
        "algorithm": first.algorithm,
        "mode": "evaluate weights" if first.load else "train",
        "backend": keras.backend.backend(),
        "hyperparameters": {
            "batch_size": training.batch_size,
            "learning_rate": training.learning_rate,
            "lr_schedule": LR_SCHEDULE,
            "max_epochs": training.epochs,
            "patience": training.patience,
            "min_delta": training.min_delta,
            "init_std": first.weight_std,
            "l2": arch.l2,
            "padding": arch.padding,
            "optimizer": "SGD, no momentum",
            "epsilon": EPSILON if first.algorithm == "BrainProp" else None,
        },
        "class_order": first.class_order,
        "validation": f"{first.validation_split:g} of the training set held out"
        if first.validation_split else "test set",
        "data": absolute(first.data_dir) or "keras.datasets (downloaded once to ~/.keras/datasets)",
        "weights": absolute(first.load),
        "output_dir": absolute(first.output_dir) if first.saves else None,
        "resume": first.resume,
        "verbose": first.verbose,
        "runs": runs,
        "note": "files: the names a first run gets; a run of the same name already there "
        "gets _2, _3, ... instead",
    }


def _run_one(config: RunConfig, data, output_dir: Path | None, command: str):
    """Train (or evaluate) one seed: its TrainingResult (None when evaluating), and
    whether the run, if a signal stopped it, can be resumed."""
    from brainprop.utils import backend

    keras = backend.start()
    from brainprop.utils.devices import placement

    # A fresh session per seed: seed 2 after seed 1 trains as seed 2 alone would.
    keras.backend.clear_session()
    with placement(config.distribute, config.mixed_precision) as place:
        return _run_placed(config, data, output_dir, command, place)


def _run_placed(config: RunConfig, data, output_dir: Path | None, command: str, place):
    from brainprop.utils import backend

    keras = backend.start()
    from brainprop.nets.architectures import ARCHITECTURES, build_model, compile_model
    from brainprop.utils.devices import check_even_split

    backend.set_random_seed(config.seed)
    arch = ARCHITECTURES[config.architecture]
    training = config.training()
    fit_data = data
    if config.validation_split:  # may refuse the split: before any file is claimed
        from brainprop.train.validation import hold_out

        fit_data = hold_out(data, config.validation_split)
    check_even_split(place.replicas, training.batch_size, {
        "training": len(fit_data.y_train), "validation": len(fit_data.validation[1]),
        "test": len(data.y_test),
    })
    model = build_model(
        config.architecture, config.algorithm, data.input_shape, data.n_classes,
        seed=config.seed, batch_size=training.batch_size, init_std=config.weight_std,
    )
    compile_model(model, training.learning_rate)

    if config.load:
        from brainprop.train.training import evaluate
        from brainprop.nets.weights import load_weights

        load_weights(model, config.load)  # a file that does not fit ends here, in one line
        model.summary()
        print(f"Test accuracy: {evaluate(model, data, training.batch_size):.4f}")
        return None, False
    model.summary()

    print(
        f"Training {config.algorithm} on {config.dataset} ({config.architecture}): "
        f"batch {training.batch_size}, learning rate {training.learning_rate}, "
        f"init std {config.weight_std}, L2 {arch.l2}, at most {training.epochs} epochs, "
        f"patience {training.patience}, seed {config.seed}, backend {keras.backend.backend()}, "
        f"{place.describe()}"
    )
    raise_if_stopped()  # a Ctrl-C while the backend started or the model was built
    if output_dir is None:
        return _train_and_save(config, model, data, fit_data, None, command, place)

    from brainprop.runs.outputs import find_unfinished, hold_run, reserve_run_files

    # The run's name is claimed only now that every check passed, just before training.
    claim = find_unfinished if config.resume else reserve_run_files
    files = claim(output_dir, config.name)
    with hold_run(files):
        return _train_and_save(config, model, data, fit_data, files, command, place)


def settings(config: RunConfig) -> dict:
    """The options that decide how a run trains, as given on the command line: a
    resumed run must use the interrupted run's."""
    training = config.training()
    return {"--epochs": training.epochs, "--patience": training.patience,
            "--batch-size": training.batch_size, "--learning-rate": training.learning_rate,
            "--validation-split": config.validation_split,
            "--weight-std": config.weight_std}


def _train_and_save(config, model, data, fit_data, files, command, place):
    from brainprop.runs.outputs import check_settings, record_settings, release_run_files
    from brainprop.train.training import train

    training = config.training()
    if files is not None:
        if config.resume:
            check_settings(files, settings(config))
            from brainprop.train.resume import RunBackup

            done = RunBackup(files.backup, None, None, None).completed_epochs()
            print(f"Resuming {files.stem.name} from epoch {done + 1} of {training.epochs} "
                  f"({done} completed)", flush=True)
        else:
            record_settings(files, settings(config))
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory() as scratch:
        # A held-out validation set needs the best weights even without -s.
        best_weights = files.weights if files else None
        if config.validation_split and best_weights is None:
            best_weights = Path(scratch) / "best.weights.h5"
        result = train(
            model,
            fit_data,
            training,
            best_weights_path=best_weights,
            csv_log_path=files.log if files else None,
            backup_dir=files.backup if files else None,
            verbose=config.verbose,
            chance_hint_classes=data.n_classes if config.algorithm == "BrainProp" else None,
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
        validation = _validation_summary(config, model, best_weights, fit_data)
    if files is not None:
        where = {"devices": list(place.devices), "dtype_policy": place.policy}
        _save(config, model, data, result, files, started, {**validation, **where}, command)
    return result, files is not None


def _validation_summary(config: RunConfig, model, best_weights, fit_data) -> dict:
    """What was validated on, and the test accuracy of the best epoch when held out."""
    if not config.validation_split:
        return {"validation": "test set", "validation_split": None}
    from brainprop.train.validation import SPLIT_SEED, best_epoch_test_accuracy

    accuracy = best_epoch_test_accuracy(
        model, best_weights, fit_data, config.training().batch_size
    )
    if accuracy is not None:
        print(f"Test accuracy at the best validation epoch: {accuracy:.4f}")
    return {
        "validation": f"{config.validation_split:g} of the training set held out "
        f"(split seed {SPLIT_SEED})",
        "validation_split": config.validation_split,
        "validation_images": int(len(fit_data.y_val)),
        "train_images": int(len(fit_data.y_train)),
        "test_accuracy_at_best_epoch": accuracy,
    }


def summary(config: RunConfig, model, data, result) -> dict:
    """What the summary records of a run, times and files aside."""
    import keras

    from brainprop.nets.architectures import ARCHITECTURES, LR_SCHEDULE
    from brainprop.model import exploration_rate

    arch = ARCHITECTURES[config.architecture]
    training = config.training()
    return {
        "dataset": config.dataset,
        "architecture": config.architecture,
        "algorithm": config.algorithm,
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
        "hyperparameters": {
            "batch_size": training.batch_size,
            "learning_rate": training.learning_rate,
            "lr_schedule": LR_SCHEDULE,
            "init_std": config.weight_std,
            "l2": arch.l2,
            "padding": arch.padding,
            "max_epochs": training.epochs,
            "patience": training.patience,
            "min_delta": training.min_delta,
            "optimizer": "SGD, no momentum",
            "epsilon": exploration_rate(model),
        },
        "config": config.as_dict(),
    }


def _save(config, model, data, result, files, started, validation, command) -> None:
    from brainprop.model import training_accuracy_label
    from brainprop.runs.outputs import (
        plot_accuracy,
        write_history,
        write_history_json,
        write_summary,
    )

    plot_accuracy(
        result.history,
        f"{config.dataset} {config.architecture} {config.algorithm}",
        training_accuracy_label(model),
        files.plot_pdf,
        files.plot_png,
    )
    write_history(files.history, config.dataset, config.algorithm, result.history)
    write_history_json(files.history_json, config.dataset, config.algorithm, result.history)
    record = summary(config, model, data, result)
    record.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=command,
        files={kind: path.name for kind, path in files.outputs().items()
               if path.exists() or kind == "summary"},
    )
    record.update(validation)
    write_summary(files.summary, record)
    if result.interrupted_by is None:
        # Only now is the run complete: until here a crash leaves it resumable.
        shutil.rmtree(files.backup, ignore_errors=True)
    print(f"Saved {', '.join(record['files'].values())} in {files.stem.parent}")
