"""A run resolved once: `RunPlan`, made from a `RunConfig` before a backend starts.

A `RunConfig` holds the words of the command line; its `RunPlan` holds what they name:
the rule, the architecture (with `--init-std` applied), the data set's declaration, the
hyperparameters, the command the summary records and where the files go.  Everything
after planning reads the plan and looks no name up again.

No Keras here: a run is planned, and refused in one line, before a backend starts.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainprop.data import DatasetSpec, check_data_options, dataset_spec
from brainprop.data.own import parse_image_size
from brainprop.model.feedback import DEFAULT_FEEDBACK, get_feedback
from brainprop.model.rules import Rule, get_rule
from brainprop.nets.architectures import ARCHITECTURES, Architecture
from brainprop.runs.runconfig import LOAD_ALONE, MAIN_PY, RunConfig
from brainprop.train.schedule import LR_SCHEDULE
from brainprop.train.trainingconfig import TrainingConfig
from brainprop.utils.errors import BrainPropError
from brainprop.utils.invocation import Invocation


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """How one run trains, resolved once (`RunPlan.hyperparameters`).

    The one record of them: the run summary and `--print-config` write `as_dict()`,
    the start of training prints `line()`, and `--resume` compares `settings()` with
    the interrupted run's.
    """

    training: TrainingConfig  # batch size, learning rate, epochs, patience, min_delta, seed
    init_std: float
    l2: float
    padding: str
    epsilon: float | None  # the rule's exploration rate; None: it never explores
    validation_split: float | None
    feedback: str = DEFAULT_FEEDBACK  # a kind of brainprop.model.feedback
    feedback_decay: float = 0.0  # its decay (kolen-pollack's), 0 for the others
    image_size: str | None = None  # `HxW` every image was resized to; None: as found

    @classmethod
    def resolve(cls, config: RunConfig, architecture: Architecture, rule: Rule,
                dataset: DatasetSpec) -> Hyperparameters:
        """The options of `config` where given, else the architecture's (its `init_std`
        already the option's, if given), the rule's and the data set's."""
        feedback = get_feedback(rule.feedback)
        return cls(
            training=TrainingConfig(
                batch_size=config.batch_size or architecture.batch_size,
                learning_rate=config.learning_rate or architecture.learning_rate,
                epochs=config.epochs,
                patience=config.patience,
                seed=config.seed,
                batchnorm_statistics=config.batchnorm_statistics
                or default_batchnorm_statistics(dataset),
            ),
            init_std=architecture.init_std,
            l2=architecture.l2,
            padding=architecture.padding,
            epsilon=rule.epsilon,
            validation_split=config.validation_split,
            feedback=feedback.name,
            feedback_decay=feedback.decay,
            image_size=config.image_size,
        )

    def as_dict(self) -> dict[str, Any]:
        training = self.training
        return {
            "batch_size": training.batch_size,
            "learning_rate": training.learning_rate,
            "lr_schedule": LR_SCHEDULE,
            "init_std": self.init_std,
            "l2": self.l2,
            "padding": self.padding,
            "max_epochs": training.epochs,
            "patience": training.patience,
            "min_delta": training.min_delta,
            "optimizer": "SGD, no momentum",
            "epsilon": self.epsilon,
            "feedback": self.feedback,
            **self._decay(),
            "batchnorm_statistics": training.batchnorm_statistics,
        }

    def _decay(self) -> dict[str, float]:
        """`feedback_decay`, for the kinds that decay (none decays with the paper's)."""
        return {"feedback_decay": self.feedback_decay} if self.feedback_decay else {}

    def line(self) -> str:
        """`batch 128, learning rate 0.1, init std 0.01, L2 0.0, at most 500 epochs,
        patience 45`, and the exploration rate of a rule that explores."""
        training = self.training
        explores = f", epsilon {self.epsilon}" if self.epsilon is not None else ""
        feedback = f", feedback {self.feedback}" if self.feedback != DEFAULT_FEEDBACK else ""
        feedback += f" (decay {self.feedback_decay:g})" if self.feedback_decay else ""
        statistics = ("" if training.batchnorm_statistics == "release"
                      else f", batchnorm statistics {training.batchnorm_statistics}")
        return (f"batch {training.batch_size}, learning rate {training.learning_rate}, "
                f"init std {self.init_std}, L2 {self.l2}, at most {training.epochs} epochs, "
                f"patience {training.patience}{explores}{feedback}{statistics}")

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share with the interrupted one, by `RunConfig` field."""
        training = self.training
        return {"epochs": training.epochs, "patience": training.patience,
                "batch_size": training.batch_size, "learning_rate": training.learning_rate,
                "validation_split": self.validation_split, "init_std": self.init_std,
                "image_size": self.image_size,
                # Recorded only when not the paper's: backups from before it still resume.
                **({"feedback": self.feedback} if self.feedback != DEFAULT_FEEDBACK else {}),
                **self._decay(),
                **({"batchnorm_statistics": training.batchnorm_statistics}
                   if training.batchnorm_statistics != "release" else {})}


def default_batchnorm_statistics(dataset: DatasetSpec) -> str:
    """The release's statistics for a data set of the paper (its runs stay the release's),
    statistics in step with the epoch for the others (FashionMNIST, your own)."""
    return "release" if dataset.paper_architectures else "epoch"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """One run (one seed), resolved: what its options name, made once by `plan_run`."""

    config: RunConfig  # the options, as given
    rule: Rule
    architecture: Architecture  # with --init-std applied
    dataset: DatasetSpec
    hyperparameters: Hyperparameters
    command: str  # the command line the summary records
    output_dir: Path | None  # where -s writes the run's files; None: nothing is written
    image_size: tuple[int, int] | None = None  # (H, W) every image is resized to
    invocation: Invocation = MAIN_PY  # how the command was started: `brainprop`, `python main.py`

    @property
    def name(self) -> str:
        """The stem of the run's files: `MNIST_dense_BrainProp_seed1`; for a path, the
        file's or folder's name stands for the data set (`images_conv_EBP_seed1`).  A
        feedback other than the paper's is named before the seed
        (`MNIST_conv_BrainProp_kolen-pollack_seed1`), so that runs of several kinds share
        a folder."""
        feedback = self.hyperparameters.feedback
        kind = "" if feedback == DEFAULT_FEEDBACK else f"_{feedback}"
        return (f"{self.dataset.name}_{self.config.architecture}_{self.rule.name}{kind}"
                f"_seed{self.config.seed}")

    def resume_command(self) -> str:
        """The command that continues this run once interrupted, as it was started, and
        runnable from any folder: every path in it absolute."""
        resumed = dataclasses.replace(self.config, resume=True).with_absolute_paths()
        return shlex.join(self.invocation.command_anywhere(resumed.argv()))

    @property
    def alignment(self) -> bool:
        """Whether the run measures its angles with backpropagation every epoch: its
        weight layers have feedback weights (any kind but `symmetric`)."""
        return not get_feedback(self.rule.feedback).tied

    @property
    def paper_combination(self) -> bool:
        """Whether the paper trained this network on this data set."""
        return self.config.architecture in self.dataset.paper_architectures


def plan_run(config: RunConfig, command: str | None = None,
             invocation: Invocation = MAIN_PY) -> RunPlan:
    """The plan of `config`; BrainPropError, in one line, for a run that cannot be made.

    `command` is the command line the summary records (default: the one that runs
    `config` alone); `invocation`, how that command was started (`brainprop`, `python
    main.py`, ...), which the command that resumes the run repeats.
    """
    config.check()
    # The rule with the feedback its weight layers send the learning signal down through.
    feedback = get_feedback(config.feedback)
    if config.feedback_decay is not None:
        feedback = dataclasses.replace(feedback, decay=config.feedback_decay)
    rule = dataclasses.replace(get_rule(config.algorithm), feedback=feedback)
    architecture = ARCHITECTURES[config.architecture]
    if config.init_std is not None:
        architecture = dataclasses.replace(architecture, init_std=config.init_std)
    dataset = dataset_spec(config.dataset)
    image_size = parse_image_size(config.image_size) if config.image_size else None
    check_data_options(dataset, config.data_dir, config.class_order, image_size)
    saves = config.saves and not config.load
    return RunPlan(
        config=config,
        rule=rule,
        architecture=architecture,
        dataset=dataset,
        hyperparameters=Hyperparameters.resolve(config, architecture, rule, dataset),
        command=command or config.command(invocation),
        output_dir=Path(config.output_dir) if saves else None,
        image_size=image_size,
        invocation=invocation,
    )


def plan_runs(configs: Sequence[RunConfig], command: str | None = None,
              invocation: Invocation = MAIN_PY) -> list[RunPlan]:
    """The plans of `configs`, the seeds of one command; BrainPropError unless every one
    can run and they can run together (`-l` evaluates one file, alone: one seed, no
    held-out split, nothing to resume)."""
    plans = [plan_run(config, command, invocation) for config in configs]
    first = configs[0]
    if first.load and (len(configs) > 1 or first.validation_split or first.resume):
        raise BrainPropError(LOAD_ALONE)
    return plans
