"""Recover the class order a Tiny ImageNet weight file was trained with.

The original release numbered the Tiny ImageNet classes in `os.listdir` order on the
authors' file system, which no other machine is sure to reproduce; its output unit k
means whatever wnid came k-th there.  A network that classifies its own training images
well reveals that order: predict every training image, count how often each unit is
chosen for each wnid, and give each unit the wnid it agrees with most, one wnid per
unit (the assignment that maximises the total agreement, solved exactly by SciPy's
Hungarian method).  The order file written lists the wnids in output-unit order, one
per line, for `main.py TinyImageNet deep ... -l WEIGHTS --class-order FILE`.

    python -m brainprop.classorder WEIGHTS [--data-dir DIR] [--output FILE]

The agreement reached (the training accuracy under the recovered order) says how far
to trust it: a trained network agrees far above chance (1 / number of classes).
Weights of either rule work: the prediction is the argmax of the output layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

import brainprop.data
import brainprop.nets
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.weights import check_weight_file, load_weights
from brainprop.utils.atomic import write_atomically
from brainprop.utils.errors import BrainPropError, Parser, run_command
from brainprop.utils.invocation import invoked_as, module_invocation

# The only architecture the paper trained on Tiny ImageNet.
DATASET, ARCHITECTURE = "TinyImageNet", "deep"


@dataclasses.dataclass(frozen=True)
class RecoveredOrder:
    """The wnid of each output unit, and how well the predictions agree with it."""

    classes: list[str]  # classes[k]: the wnid of output unit k
    agreement: float  # fraction of images whose unit is assigned their wnid
    sorted_agreement: float  # the same with the sorted wnids (this project's default)
    images: int
    clear_units: int  # units given the wnid they were chosen for most often


def confusion_matrix(units: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[u, c]: how many images of class `c` the network gave to unit `u`."""
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (units, labels), 1)
    return counts


def recover_order(counts: np.ndarray, classes: list[str]) -> RecoveredOrder:
    """Assign one class of `classes` (the label order of `counts`' columns) to each unit,
    maximising the number of images whose unit is assigned their class."""
    units, columns = linear_sum_assignment(counts, maximize=True)
    total = int(counts.sum())
    order = [classes[column] for _, column in sorted(zip(units, columns, strict=True))]
    assigned = counts[units, columns]
    return RecoveredOrder(
        classes=order,
        agreement=float(assigned.sum() / total),
        sorted_agreement=float(np.trace(counts) / total),
        images=total,
        clear_units=int(np.sum(assigned == counts[units].max(axis=1))),
    )


def predicted_units(weights: Path, data, batch_size: int, verbose: int | str = "auto") -> np.ndarray:
    """The output unit `weights` choose (argmax) for each training image of `data`.

    Keras starts here, with the network: `brainprop.nets` and `brainprop.data` name
    their Keras-side functions lazily, so the command line is checked before.
    """
    model = brainprop.nets.build_model(ARCHITECTURES[ARCHITECTURE], RULES["BrainProp"],
                                       data.input_shape, data.n_classes)
    load_weights(model, weights)
    batches = brainprop.data.ImageBatches(data.x_train, data.y_train, batch_size)
    outputs = model.predict(brainprop.data.fit_input(batches), verbose=verbose)
    return np.asarray(outputs).argmax(axis=-1)  # predict returns NumPy arrays


def first_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first `count` examples of each class, in data order."""
    rank = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        rank[where] = np.arange(len(where))
    return np.flatnonzero(rank < count)


def write_order(path: Path, classes: list[str]) -> None:
    """One wnid per line, output unit 0 first; written atomically."""
    write_atomically(path, lambda partial: partial.write_text("".join(f"{c}\n" for c in classes)))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


# How this command can be started, and what its errors say when it was not started so.
STARTED_AS = ("brainprop-classorder", "brainprop.classorder", "brainprop.runs.classorder")
CLASSORDER = module_invocation("classorder", "brainprop.classorder")


def build_parser(prog: str = "python -m brainprop.classorder") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Recover the class order a Tiny ImageNet weight file (deep network, "
        "either rule; the release's TinyImageNet_BrainProp_weights.h5 or a file of -s) "
        "was trained with, from its predictions on the training images; write it as a "
        "file for --class-order.",
    )
    parser.add_argument("weights", help="the weight file (.h5 or .weights.h5)")
    parser.add_argument("--data-dir", help="the folder holding tiny-imagenet-200/ "
                        "(default: the current directory)")
    parser.add_argument("--output", help="the order file to write; never overwritten "
                        "(default: the weight file's name + .classes.txt, beside it)")
    parser.add_argument("--per-class", type=_positive_int, metavar="N",
                        help="use the first N training images of each class "
                        "(default: all of them)")
    parser.add_argument("--batch-size", type=_positive_int, default=128,
                        help="images per prediction batch (default: 128)")
    return parser


def default_output(weights: Path) -> Path:
    return weights.with_name(f"{weights.name}.classes.txt")


def recover_and_write(args: argparse.Namespace) -> RecoveredOrder:
    """Recover the class order of `args.weights`, write it, and say how to evaluate with it."""
    weights = check_weight_file(args.weights)
    output = Path(args.output) if args.output else default_output(weights)
    if output.exists():
        raise BrainPropError(f"{output} exists and is never overwritten: pass another --output")
    if not output.parent.is_dir():
        raise BrainPropError(f"cannot write {output}: {output.parent} is not a folder")
    # Labels in sorted wnid order.
    data = brainprop.data.load_dataset(brainprop.data.dataset_spec(DATASET), args.data_dir, None)
    if args.per_class:
        keep = first_per_class(data.y_train, args.per_class)
        data = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    print(f"Predicting {len(data.y_train)} training images with {weights}", flush=True)
    units = predicted_units(weights, data, args.batch_size)
    result = recover_order(confusion_matrix(units, data.y_train, data.n_classes), list(data.classes))
    write_order(output, result.classes)
    n = data.n_classes
    print(
        f"Agreement {result.agreement:.4f} on {result.images} training images with the "
        f"recovered order (sorted wnids: {result.sorted_agreement:.4f}; chance: {1 / n:.4f}); "
        f"{result.clear_units} of {n} units are given the wnid they were chosen for most often."
    )
    evaluate = ["python", "main.py", DATASET, ARCHITECTURE, "BrainProp", "-l", str(weights),
                "--class-order", str(output)]
    evaluate += ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"Wrote {output}. Evaluate with: {shlex.join(evaluate)}")
    return result


def main(argv: list[str] | None = None) -> int:
    invoked = invoked_as(STARTED_AS, CLASSORDER)
    args = build_parser(invoked.name).parse_args(argv)

    def recover() -> int:
        recover_and_write(args)
        return 0

    return run_command(invoked.name, recover)


if __name__ == "__main__":
    sys.exit(main())
