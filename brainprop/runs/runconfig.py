"""One run, described once: `RunConfig`.

Each field carries its command-line flag and help text, so that `main.py`'s
parser, the options `reproduce` passes on to every run, the command that
resumes a run (`config.argv()`) and the run summary are all derived from the
fields.  Adding an option is adding a field: it becomes a flag of `main.py`,
an option `reproduce` passes on to every run (unless `forward=False`), a part
of the resume command and of the summary's `config`.

No Keras here: a run is described, and checked, before a backend starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
from typing import Any, Callable

from brainprop.data.datasets import DATASETS, dataset_spec, paper_combinations
from brainprop.data.own import is_path, parse_image_size
from brainprop.model.feedback import DEFAULT_FEEDBACK, FEEDBACK, KOLEN_POLLACK_DECAY
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.train.schedule import LR_HALVING_EPOCHS
from brainprop.train.trainingconfig import (
    BATCHNORM_STATISTICS,
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    MIN_DELTA,
)
from brainprop.utils.errors import BrainPropError
from brainprop.utils.invocation import Invocation, default_invocation

LOAD_AND_SAVE = (
    "-s saves what training produces and -l evaluates weights without training: drop -s "
    "(or -l to train)"
)
# `main.py` when this process was not started as it (its `main` called from Python, or
# a child process of `reproduce`).
MAIN_PY = default_invocation("main.py", "brainprop.runs.cli")
# The options that name a file or folder, beside a dataset given as a path.
PATH_OPTIONS = ("load", "output_dir", "data_dir", "tensorboard")
# The values of --class-order that name no file.
CLASS_ORDERS = ("sorted", "listdir")

LOAD_ALONE = (
    "-l evaluates one weight file on the test set: drop --seeds, --validation-split and --resume"
)


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number of `kind` above 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(_not_a(kind, text)) from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _not_a(kind: type, text: str) -> str:
    """Why `text` is not a `kind`: `1e9` is a number, but not a whole one."""
    if kind is int:
        try:
            float(text)
        except ValueError:
            pass
        else:
            return f"{text!r} is not a whole number; write it in digits, such as 500"
    return f"{text!r} is not a number"


def decay_rate(text: str) -> float:
    """An argparse type: a finite number, 0 or above."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number, 0 or above, "
                                         "such as 0.001")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1, such as 0.1")
    return value


# NumPy and both backends take seeds from 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
# More runs than anyone starts from one command; checked before any list is made.
MAX_SEEDS = 10_000


def parse_seed(text: str) -> int:
    """An argparse type: one seed, 0 to 2**32 - 1 (what NumPy and the backends take)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed: give a whole number from 0 to {MAX_SEED}"
        ) from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {text} is out of range: seeds go from 0 to {MAX_SEED}")
    return seed


def _seed_number(text: str, whole: str) -> int:
    try:
        int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{whole!r} is not a list of seeds; write 1-10, 1,3,5 or 7"
        ) from None
    return parse_seed(text)


def parse_seeds(text: str) -> list[int]:
    """Seeds from `1-10`, `1,3,5`, `7` or a mix (`1-3,8`), in the order given.

    Every part is checked (numbers, order, range, how many) before the list is made.
    """
    ranges = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        first = _seed_number(first, text)
        last = _seed_number(last, text) if dash else first
        if last < first:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} in {text!r} runs backwards; write {last}-{first}"
            )
        ranges.append(range(first, last + 1))
    count = sum(len(r) for r in ranges)
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} names {count} seeds; at most {MAX_SEEDS} in one command"
        )
    seeds = [seed for r in ranges for seed in r]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return seeds


def check_combination(dataset: str, architecture: str, beyond_paper: bool = False) -> None:
    """BrainPropError for a data set of the paper on a network the paper did not train
    on it, unless `beyond_paper`.  Other data sets (FashionMNIST, your own) take every
    network their images fit (`nets.architectures.check_input`)."""
    paper = paper_combinations()
    if dataset not in paper or architecture in paper[dataset] or beyond_paper:
        return
    raise BrainPropError(
        f"{dataset} with {architecture} is not a combination of the paper; "
        f"allowed: {combinations_text()}; add --beyond-paper to train it anyway"
    )


def image_size_argument(text: str) -> str:
    """An argparse type: `HxW` or one number (a square), written back as `HxW`."""
    try:
        height, width = parse_image_size(text)
    except BrainPropError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return f"{height}x{width}"


def dataset_argument(text: str) -> str:
    """An argparse type: a declared data set, or the path of an .npz or an image folder."""
    if text in DATASETS:
        return text
    if not is_path(text):
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose a declared data set or give the path of an "
            ".npz or of an image folder)"
        )
    try:
        dataset_spec(text)
    except BrainPropError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _dataset_metavar() -> str:
    return "{" + ",".join(DATASETS) + ",PATH}"


def combinations_text() -> str:
    """`MNIST: dense, loccon, conv; CIFAR10: ...`: the combinations the paper ran."""
    return "; ".join(f"{d}: {', '.join(a)}" for d, a in paper_combinations().items())


def _data_dir_help() -> str:
    files = "; ".join(f"{name}: {spec.files}" for name, spec in DATASETS.items())
    return ("read the data set from the standard files in this folder instead of "
            f"downloading it: {files} (see docs/data.md)")


def option(*flags: str, help: str | Callable[[], str], default: Any = None, forward: bool = True,
           shown_default: str | None = None, **argparse_options) -> Any:
    """A RunConfig field and its command-line option.

    `flags` empty makes a positional argument.  `forward=False` for what `reproduce`
    decides itself (which run, where, whether to save or resume) rather than passes on.
    `shown_default` is what --help says the default is, when not the value itself.
    Other keywords go to `ArgumentParser.add_argument` (`type`, `action`, `choices`, ...).
    `help`, `choices` and `metavar` may be functions, called when a parser is built: what they
    read (the declared data sets) may grow after this module is imported.
    """
    metadata = {"flags": flags, "help": help, "forward": forward,
                "shown_default": shown_default, "argparse": argparse_options}
    if not flags:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    """The help text of a RunConfig field (its default aside), as a parser built now shows it."""
    text = field.metadata["help"]
    return text() if callable(text) else text


def _batch_sizes() -> str:
    sizes = {name: arch.batch_size for name, arch in ARCHITECTURES.items()}
    usual = max(set(sizes.values()), key=list(sizes.values()).count)
    others = [f"{size} for {name}" for name, size in sizes.items() if size != usual]
    return ", or ".join([str(usual), *others])


def _init_stds() -> str:
    stds = {name: arch.init_std for name, arch in ARCHITECTURES.items()}
    return ", ".join(f"{std:g} for {name}" for name, std in stds.items())


def _learning_rates() -> str:
    rates = {arch.learning_rate for arch in ARCHITECTURES.values()}
    return "/".join(f"{rate:g}" for rate in sorted(rates))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides what one run (one seed) does."""

    dataset: str = option(
        type=dataset_argument, metavar=_dataset_metavar,
        help="the data set: a declared one, or the path of an .npz of x_train, y_train, "
        "x_test, y_test or of a folder of train/<class>/ and test/<class>/ images "
        "(see docs/data.md)",
    )
    architecture: str = option(choices=list(ARCHITECTURES), help="the network")
    # A live view: a rule registered after this module was imported is a choice too.
    algorithm: str = option(choices=RULES.keys(), help="the learning rule")
    save: bool = option(
        "-s", "--save", default=False, action="store_true", forward=False,
        help="save the accuracy plot (PDF and PNG), the history (pickle and JSON), the "
        "weights of the best validation epoch and a JSON run summary",
    )
    load: str | None = option(
        "-l", "--load", metavar="WEIGHTS", forward=False,
        help="evaluate these weights (this project's .weights.h5 or a legacy Keras 2 "
        ".h5 of the original release) on the test set instead of training",
    )
    epochs: int = option("--epochs", default=DEFAULT_EPOCHS, type=positive(int),
                         help="at most this many epochs")
    patience: int = option(
        "--patience", default=DEFAULT_PATIENCE, type=positive(int),
        help=f"stop after this many epochs without a {MIN_DELTA:g} gain in validation accuracy",
    )
    seed: int = option("--seed", default=1, type=parse_seed, forward=False,
                       help=f"seed for NumPy and the backend, 0 to {MAX_SEED}")
    batch_size: int | None = option("--batch-size", type=positive(int),
                                    shown_default=_batch_sizes(), help="batch size")
    learning_rate: float | None = option(
        "--learning-rate", type=positive(float), shown_default=_learning_rates(),
        help=f"initial learning rate, halved every {LR_HALVING_EPOCHS} epochs",
    )
    init_std: float | None = option(
        "--init-std", type=positive(float), metavar="X", shown_default=_init_stds(),
        help="standard deviation of the initial weights (normal, mean 0); the paper's text "
        "gives 0.1 for dense, where the release, and the default, use 0.01",
    )
    class_order: str | None = option(
        "--class-order", metavar="{sorted,listdir,FILE}", forward=False,
        shown_default="sorted",
        help="TinyImageNet: which wnid each output unit stands for: the sorted wnids, the "
        "os.listdir order of train/ (how the release numbered them; it differs between "
        "machines), or a file of wnids, one per line, in output-unit order, such as "
        "python -m brainprop.classorder writes for a weight file",
    )
    beyond_paper: bool = option(
        "--beyond-paper", default=False, action="store_true", forward=False,
        help="train a data set of the paper on a network the paper did not train on it "
        "(CIFAR10 dense, MNIST deep, ...); the summary marks the run paper_combination: "
        "false and the report lists it apart, never beside the paper's figures. "
        "FashionMNIST and your own data take every network their images fit without it",
    )
    output_dir: str = option(
        "--output-dir", default=".", forward=False, shown_default="current directory",
        help="where -s writes its files; created if needed, checked before training",
    )
    data_dir: str | None = option("--data-dir", help=_data_dir_help)
    image_size: str | None = option(
        "--image-size", type=image_size_argument, metavar="HxW",
        shown_default="the images' own size, which must be one",
        help="an image folder: resize every image to this height x width (or one number: a "
        "square) as it is decoded, stretched whatever its aspect ratio; each size is "
        "cached apart (see docs/data.md)",
    )
    validation_split: float | None = option(
        "--validation-split", type=fraction, metavar="F",
        shown_default="validate on the test set, as the paper did",
        help="hold out this fraction of the training set (a fixed split) for early "
        "stopping and the best epoch, then report the test accuracy of that epoch",
    )
    verbose: int | None = option(
        "--verbose", type=int, choices=(0, 1, 2),
        shown_default="1 on a terminal, 2 when the output goes to a file",
        help="as in Keras' fit: 0 silent, 1 a progress bar per epoch, 2 one line per epoch",
    )
    tensorboard: str | None = option(
        "--tensorboard", metavar="DIR",
        help="write every epoch's numbers (each class's accuracy and the learning rate "
        "included) for TensorBoard into DIR/<run name>/ (needs `pip install tensorboard`)",
    )
    resume: bool = option(
        "--resume", default=False, action="store_true", forward=False,
        help="continue the newest interrupted or crashed run of this dataset, "
        "architecture, algorithm and seed in --output-dir from its last completed "
        "epoch (implies -s)",
    )
    distribute: bool = option(
        "--distribute", default=False, action="store_true",
        help="train this run data-parallel over every GPU (or TPU) of this machine "
        "(see docs/gpus.md); the batch size stays the global batch",
    )
    feedback: str = option(
        "--feedback", default=DEFAULT_FEEDBACK, choices=list(FEEDBACK),
        help="what the weight layers send the learning signal down through: symmetric (their "
        "own weights transposed, the paper's), random (feedback alignment), sign (sign "
        "symmetry), kolen-pollack (feedback weights learning with the weights, both decaying) "
        "or direct (straight from the output to every layer); see docs/feedback.md",
    )
    feedback_decay: float | None = option(
        "--feedback-decay", type=decay_rate, metavar="RATE",
        shown_default=f"{KOLEN_POLLACK_DECAY:g}",
        help="kolen-pollack's weight decay: at every step the weights and the feedback "
        "weights both lose the learning rate times RATE of themselves, so that they "
        "converge (0: none)",
    )
    mixed_precision: str | None = option(
        "--mixed-precision", nargs="?", const="float16", choices=("float16", "bfloat16"),
        shown_default="float32; the option alone means float16",
        help="compute in float16 or bfloat16 with float32 weights, output layer, rule and "
        "loss (Keras' mixed_float16 policy, with dynamic loss scaling, or mixed_bfloat16, "
        "without); float16 for GPUs, bfloat16 for GPUs and CPUs that have it (see docs/gpus.md)",
    )

    batchnorm_statistics: str | None = option(
        "--batchnorm-statistics", choices=BATCHNORM_STATISTICS,
        shown_default="release for the paper's data sets, epoch for FashionMNIST and your own",
        help="the moving statistics of BatchNormalization that evaluation uses: release, "
        "momentum 0.99 as the release (right for the paper's data sets, whose epochs are "
        "hundreds of steps), or epoch, a momentum in step with the epoch's length, so that "
        "validation reflects the trained network from the first epoch on a small data set "
        "(see docs/hyperparameters.md)",
    )

    @property
    def saves(self) -> bool:
        """Whether the run writes its files (`--resume` implies `-s`)."""
        return self.save or self.resume

    def check(self) -> None:
        """BrainPropError for a run the paper did not do or options that exclude each other
        (what the options name is checked as the run is planned: `brainprop.runs.plan`)."""
        check_combination(self.dataset, self.architecture, self.beyond_paper)
        if self.load and self.save:
            raise BrainPropError(LOAD_AND_SAVE)
        if self.tensorboard and self.load:
            raise BrainPropError("--tensorboard records training; -l only evaluates: drop one")
        if self.feedback_decay is not None and self.feedback != "kolen-pollack":
            raise BrainPropError(
                f"--feedback-decay is the decay of kolen-pollack feedback, not of "
                f"{self.feedback}: add --feedback kolen-pollack, or drop --feedback-decay"
            )

    def argv(self) -> list[str]:
        """The arguments of `main.py` that describe this run (defaults left out)."""
        words: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flags = field.metadata["flags"]
            if not flags:
                words.append(str(value))
            elif value != field.default:
                words += [flags[0]] if value is True else [flags[0], str(value)]
        return words

    def command(self, invocation: Invocation = MAIN_PY) -> str:
        """The shell command that runs this configuration, as `invocation` starts it."""
        return shlex.join(invocation.command(self.argv()))

    def with_absolute_paths(self) -> RunConfig:
        """The same run with every file and folder it names given by its absolute path
        (the output folder too, where it is the default), so that its command runs the
        same from any folder."""
        changes = {name: _absolute(getattr(self, name)) for name in PATH_OPTIONS}
        if is_path(self.dataset):
            changes["dataset"] = _absolute(self.dataset)
        if self.class_order not in (None, *CLASS_ORDERS):
            changes["class_order"] = _absolute(self.class_order)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, forwarded_only: bool = False,
                      seed_group: Any = None) -> None:
        """One argument per field (only those passed on to child runs if `forwarded_only`).

        `seed_group`, when given, takes `--seed` (to make it exclusive with `--seeds`).
        """
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if forwarded_only and not (meta["flags"] and meta["forward"]):
                continue
            help_text = help_of(field)
            options = {key: value() if key in ("choices", "metavar") and callable(value)
                       else value for key, value in meta["argparse"].items()}
            shown = meta["shown_default"]
            if shown is None and meta["flags"] and field.default not in (None, False):
                shown = str(field.default)
            if shown is not None:
                help_text += f" (default: {shown})"
            target = seed_group if field.name == "seed" and seed_group is not None else parser
            if meta["flags"]:
                target.add_argument(*meta["flags"], dest=field.name, default=field.default,
                                    help=help_text, **options)
            else:
                target.add_argument(field.name, help=help_text, **options)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, **changes) -> RunConfig:
        """The config named by parsed arguments (fields the parser lacks keep defaults)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if hasattr(args, f.name)}
        return cls(**{**given, **changes})

    @classmethod
    def flag_of(cls, name: str) -> str:
        """The command-line option of field `name`: `init_std` -> `--init-std`."""
        return cls.__dataclass_fields__[name].metadata["flags"][-1]

    @classmethod
    def forwarded(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The values of the options passed on to child runs, from parsed arguments."""
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                if f.metadata["flags"] and f.metadata["forward"]}


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))
