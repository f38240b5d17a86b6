"""One planned run carried out, once the backend has started: `run_seed(plan, data)`.

Each seed is one `Run`, made once when it starts: its plan, its data, the devices it
trains on and, with `-s`, the files it claimed.  Building, training, evaluating and
saving read the run and nothing else.  Imported only after `brainprop.runs.run` has
checked everything and started the backend.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import tempfile
from pathlib import Path
from typing import Any

import keras

from brainprop.data import Dataset
from brainprop.nets import build_model, compile_model
from brainprop.nets.weights import load_weights
from brainprop.runs import outputs
from brainprop.runs.outputs import RunFiles
from brainprop.runs.plan import RunPlan
from brainprop.train.resume import RunBackup
from brainprop.train.training import TrainingFiles, TrainingResult, evaluate, train
from brainprop.train.validation import SPLIT_SEED, best_epoch_test_accuracy, hold_out
from brainprop.utils import backend
from brainprop.utils.devices import placement
from brainprop.utils.placement import Placement, check_even_split
from brainprop.utils.signals import raise_if_stopped


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run (one seed) carries, made once as it starts."""

    plan: RunPlan  # the run resolved: rule, architecture, data set, hyperparameters, command
    data: Dataset  # the data set: the test set, the summary's counts
    fit_data: Dataset  # what fit trains and validates on: `data`, or a held-out split of it
    place: Placement  # the devices and dtype policy it trains with
    files: RunFiles | None = None  # with -s: claimed just before training


def run_seed(plan: RunPlan, data: Dataset) -> tuple[TrainingResult | None, bool]:
    """Train (or evaluate) one seed: its TrainingResult (None when evaluating), and
    whether the run, if a signal stopped it, can be resumed."""
    config = plan.config
    # A fresh session per seed: seed 2 after seed 1 trains as seed 2 alone would.
    keras.backend.clear_session()
    with placement(config.distribute, config.mixed_precision) as place:
        backend.set_random_seed(config.seed)
        run = _start(plan, data, place)
        model = _build(run)
        if config.load:
            _evaluate(run, model)
            return None, False
        model.summary()
        print(f"Training {plan.rule.name} on {data.name} ({config.architecture}): "
              f"{plan.hyperparameters.line()}, seed {config.seed}, "
              f"backend {keras.backend.backend()}, {place.describe()}")
        raise_if_stopped()  # a Ctrl-C while the backend started or the model was built
        if plan.output_dir is None:
            return _train_and_save(run, model)

        # The run's name is claimed only now that every check passed, just before training.
        claim = outputs.find_unfinished if config.resume else outputs.reserve_run_files
        files = dataclasses.replace(claim(plan.output_dir, plan.name), angles=plan.alignment)
        run = dataclasses.replace(run, files=files)
        with outputs.hold_run(run.files):
            return _train_and_save(run, model)


def _start(plan: RunPlan, data: Dataset, place: Placement) -> Run:
    """The run of `plan`, once its data split over `place`'s devices is checked."""
    split = plan.config.validation_split
    # A held-out split may be refused: before any file is claimed.
    fit_data = hold_out(data, split) if split else data
    check_even_split(place.replicas, plan.hyperparameters.training.batch_size, {
        "training": len(fit_data.y_train), "validation": len(fit_data.validation[1]),
        "test": len(data.y_test),
    })
    return Run(plan, data, fit_data, place)


def _build(run: Run) -> keras.Model:
    """The run's network, compiled for its rule (weights drawn from the seeded backend)."""
    plan, training = run.plan, run.plan.hyperparameters.training
    model = build_model(plan.architecture, plan.rule, run.data.input_shape, run.data.n_classes,
                        seed=plan.config.seed, batch_size=training.batch_size)
    return compile_model(model, plan.rule, training.learning_rate)


def _evaluate(run: Run, model: keras.Model) -> None:
    """`-l`: the test accuracy of the weight file."""
    load_weights(model, run.plan.config.load)  # a file that does not fit ends here, in one line
    model.summary()
    accuracy = evaluate(model, run.data, run.plan.hyperparameters.training.batch_size)
    print(f"Test accuracy: {accuracy:.4f}")


def _train_and_save(run: Run, model: keras.Model) -> tuple[TrainingResult, bool]:
    plan, files = run.plan, run.files
    config, hyperparameters = plan.config, plan.hyperparameters
    if files is not None:
        if config.resume:
            outputs.check_settings(files, hyperparameters.settings())
            done = RunBackup(files.backup).completed_epochs()
            print(f"Resuming {files.stem.name} from epoch {done + 1} of "
                  f"{hyperparameters.training.epochs} ({done} completed)", flush=True)
        else:
            outputs.record_settings(files, hyperparameters.settings())
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory() as scratch:
        # A held-out validation set needs the best weights even without -s.
        best_weights = files.weights if files else None
        if config.validation_split and best_weights is None:
            best_weights = Path(scratch) / "best.weights.h5"
        result = train(
            model, run.fit_data, hyperparameters.training, _training_files(run, best_weights),
            verbose=config.verbose,
            chance_hint_classes=run.data.n_classes if plan.rule.discovers_classes else None,
        )
        if result.interrupted_by is not None and not result.epoch_seconds and not config.resume:
            if files is not None:  # nothing to resume: the name is free again
                outputs.release_run_files(files)
            return result, False
        print(
            f"Best validation accuracy {result.best_val_accuracy:.4f} at epoch "
            f"{result.best_epoch} of {len(result.epoch_seconds)} ({result.stop_reason})"
        )
        validation = _validation_summary(run, model, best_weights)
    if files is not None:
        _save(run, model, result, started, validation)
    return result, files is not None


def _training_files(run: Run, best_weights: Path | None) -> TrainingFiles:
    """Where training writes: the run's files with -s; TensorBoard's folder with
    --tensorboard, named after the run."""
    files, tensorboard = run.files, run.plan.config.tensorboard
    return TrainingFiles(
        best_weights=best_weights,
        csv_log=files.log if files else None,
        backup_dir=files.backup if files else None,
        tensorboard_dir=(Path(tensorboard) / (files.stem.name if files else run.plan.name)
                         if tensorboard else None),
    )


def _validation_summary(run: Run, model: keras.Model, best_weights: Path | None) -> dict:
    """What was validated on, and the test accuracy of the best epoch when held out."""
    split = run.plan.config.validation_split
    if not split:
        return {"validation": "test set", "validation_split": None}
    accuracy = best_epoch_test_accuracy(
        model, best_weights, run.fit_data, run.plan.hyperparameters.training.batch_size
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
    plan, data = run.plan, run.data
    config = plan.config
    return {
        "dataset": data.name,
        "architecture": config.architecture,
        "algorithm": plan.rule.name,
        "paper_combination": plan.paper_combination,
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
        "hyperparameters": plan.hyperparameters.as_dict(),
        "config": config.as_dict(),
    }


def _save(run: Run, model: keras.Model, result: TrainingResult,
          started: datetime.datetime, validation: dict) -> None:
    """Write the run's plot, histories and summary; then drop its backup if it finished."""
    plan, files = run.plan, run.files
    rule = plan.rule.name
    outputs.plot_accuracy(
        result.history,
        f"{run.data.name} {plan.config.architecture} {rule}",
        plan.rule.training_accuracy,
        files.plot_pdf,
        files.plot_png,
    )
    if outputs.has_angles(result.history):
        outputs.plot_angles(
            result.history,
            f"{run.data.name} {plan.config.architecture} {rule}, "
            f"{plan.config.feedback} feedback: angles with backpropagation",
            files.angles_pdf,
            files.angles_png,
        )
    outputs.write_history(files.history, run.data.name, rule, result.history)
    outputs.write_history_json(files.history_json, run.data.name, rule, result.history)
    record = summary(run, model, result)
    record.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=plan.command,
        files={kind: path.name for kind, path in files.outputs().items()
               if path.exists() or kind == "summary"},
    )
    record.update(validation)
    record.update(devices=list(run.place.devices), dtype_policy=run.place.policy)
    outputs.write_summary(files.summary, record)
    if result.interrupted_by is None:
        # Only now is the run complete: until here a crash leaves it resumable.
        outputs.drop_backup(files)
    print(f"Saved {', '.join(record['files'].values())} in {files.stem.parent}")
