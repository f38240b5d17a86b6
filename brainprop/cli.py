"""The command line of the original release, kept exactly, plus a few options.

    python main.py <dataset> <architecture> <algorithm> [-s] [-l WEIGHTS]

Mistakes a user can make end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import platform
import sys
import tempfile
from pathlib import Path

from brainprop.architectures import ALGORITHMS, ALLOWED, ARCHITECTURES, check_combination
from brainprop.errors import EXIT_USER_ERROR, BrainPropError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line, no usage block: the full usage is one --help away.
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def parse_seeds(text: str) -> list[int]:
    """Seeds from `1-10`, `1,3,5`, `7` or a mix (`1-3,8`), in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            seeds += range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of seeds; write 1-10, 1,3,5 or 7"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names no seed or a seed twice")
    return seeds


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1, such as 0.1")
    return value


def build_parser() -> argparse.ArgumentParser:
    allowed = "; ".join(f"{d}: {', '.join(a)}" for d, a in ALLOWED.items())
    parser = _Parser(
        prog="main.py",
        allow_abbrev=False,  # a typo must not silently become another option
        description="Train or evaluate a network with BrainProp or error backpropagation "
        f"(Pozzi, Bohte & Roelfsema, NeurIPS 2020). Combinations: {allowed}.",
    )
    parser.add_argument("dataset", choices=list(ALLOWED), help="the data set")
    parser.add_argument("architecture", choices=list(ARCHITECTURES), help="the network")
    parser.add_argument("algorithm", choices=list(ALGORITHMS), help="the learning rule")
    parser.add_argument(
        "-s", "--save", action="store_true",
        help="save the accuracy plot (PDF and PNG), the history pickle, the weights of "
        "the best validation epoch and a JSON run summary",
    )
    parser.add_argument(
        "-l", "--load", metavar="WEIGHTS",
        help="evaluate these weights (this project's .weights.h5 or a legacy Keras 2 "
        ".h5 of the original release) on the test set instead of training",
    )
    parser.add_argument("--epochs", type=_positive(int), default=500,
                        help="at most this many epochs (default: 500)")
    parser.add_argument("--patience", type=_positive(int), default=45,
                        help="stop after this many epochs without a 0.001 gain in "
                        "validation accuracy (default: 45)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=1,
                       help="seed for NumPy and the backend (default: 1)")
    seeds.add_argument("--seeds", type=parse_seeds,
                       help="train once per seed, one after another, each with its own "
                       "outputs: 1-10, 1,3,5 or 7")
    parser.add_argument("--batch-size", type=_positive(int),
                        help="batch size (default: 128, or 32 for loccon)")
    parser.add_argument("--learning-rate", type=_positive(float),
                        help="initial learning rate, halved every 100 epochs (default: 0.1)")
    parser.add_argument("--output-dir", default=".",
                        help="where -s writes its files; created if needed, checked before "
                        "training (default: current directory)")
    parser.add_argument("--data-dir",
                        help="read the data set from the standard files in this folder "
                        "instead of downloading it: mnist.npz, cifar-10-batches-py/ or its "
                        ".tar.gz, cifar-100-python/ or its .tar.gz, tiny-imagenet-200/ "
                        "(see README)")
    parser.add_argument("--validation-split", type=_fraction, metavar="F",
                        help="hold out this fraction of the training set (a fixed split) "
                        "for early stopping and the best epoch, then report the test "
                        "accuracy of that epoch (default: validate on the test set, as "
                        "the paper did)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the newest interrupted or crashed run of this "
                        "dataset, architecture, algorithm and seed in --output-dir from its "
                        "last completed epoch (implies -s)")
    parser.add_argument("--distribute", action="store_true",
                        help="train one run data-parallel over every GPU (or TPU) of this "
                        "machine, the batch size staying the global batch (see README)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="compute in float16 with float32 weights, output layer and "
                        "loss (Keras' mixed_float16 policy, with loss scaling); for GPUs")
    return parser


def _run(args: argparse.Namespace) -> int:
    # Everything a user can get wrong is checked before Keras starts a backend.
    check_combination(args.dataset, args.architecture, args.algorithm)
    output_dir = None
    if args.load and (args.seeds or args.validation_split or args.resume):
        raise BrainPropError(
            "-l evaluates one weight file on the test set: drop --seeds, "
            "--validation-split and --resume"
        )
    args.save = args.save or args.resume
    if args.load:
        from brainprop.weights import check_weight_file

        check_weight_file(args.load)
    elif args.save:
        from brainprop.outputs import check_writable

        output_dir = check_writable(args.output_dir)

    from brainprop.datasets import load_dataset

    data = load_dataset(args.dataset, args.data_dir)
    seeds = args.seeds or [args.seed]
    for number, seed in enumerate(seeds, start=1):
        if len(seeds) > 1:
            print(f"=== Seed {seed} ({number} of {len(seeds)}) ===", flush=True)
        seed_args = copy.copy(args)
        seed_args.seed = seed
        interrupted_by = _run_seed(seed_args, data, output_dir)
        if interrupted_by is not None:
            from brainprop.resume import SIGNAL_EXIT_CODES

            print(f"Interrupted. To continue: {_resume_command(seed_args)}", flush=True)
            return SIGNAL_EXIT_CODES.get(interrupted_by, 1)
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this seed's run."""
    words = ["python main.py", args.dataset, args.architecture, args.algorithm,
             "-s", "--seed", str(args.seed), "--output-dir", args.output_dir]
    options = {"--data-dir": args.data_dir, "--epochs": args.epochs,
               "--patience": args.patience, "--batch-size": args.batch_size,
               "--learning-rate": args.learning_rate,
               "--validation-split": args.validation_split}
    for option, value in options.items():
        if value is not None:
            words += [option, str(value)]
    words += [flag for flag, on in (("--distribute", args.distribute),
                                    ("--mixed-precision", args.mixed_precision)) if on]
    return " ".join([*words, "--resume"])


def _run_seed(args: argparse.Namespace, data, output_dir) -> int | None:
    """Train (or evaluate) one seed; the signal number if a signal stopped it."""
    import keras

    from brainprop.devices import placement

    # A fresh session per seed: seed 2 after seed 1 trains as seed 2 alone would.
    keras.backend.clear_session()
    with placement(args.distribute, args.mixed_precision) as place:
        return _run_placed_seed(args, data, output_dir, place)


def _run_placed_seed(args: argparse.Namespace, data, output_dir, place) -> int | None:
    import keras

    from brainprop.architectures import build_model, compile_model
    from brainprop.devices import check_even_split

    keras.utils.set_random_seed(args.seed)
    arch = ARCHITECTURES[args.architecture]
    batch_size = args.batch_size or arch.batch_size
    learning_rate = args.learning_rate or arch.learning_rate
    fit_data = data if args.load else _hold_out(args, data)
    check_even_split(place.replicas, batch_size, {
        "training": len(fit_data.y_train), "validation": len(fit_data.y_test),
        "test": len(data.y_test),
    })
    model = build_model(
        args.architecture, args.algorithm, data.input_shape, data.n_classes, seed=args.seed
    )
    compile_model(model, learning_rate)
    model.summary()

    if args.load:
        from brainprop.training import evaluate
        from brainprop.weights import load_weights

        load_weights(model, args.load)
        print(f"Test accuracy: {evaluate(model, data, batch_size):.4f}")
        return None

    from brainprop.training import TrainingConfig, train

    config = TrainingConfig(
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
    )
    print(
        f"Training {args.algorithm} on {args.dataset} ({args.architecture}): "
        f"batch {batch_size}, learning rate {learning_rate}, init std {arch.init_std}, "
        f"L2 {arch.l2}, at most {args.epochs} epochs, patience {args.patience}, "
        f"seed {args.seed}, backend {keras.backend.backend()}, {place.describe()}"
    )
    files = None
    if output_dir is not None:
        from brainprop.outputs import backup_dir, find_unfinished, reserve_run_files

        base = f"{args.dataset}_{args.architecture}_{args.algorithm}_seed{args.seed}"
        claim = find_unfinished if args.resume else reserve_run_files
        files = claim(output_dir, base)
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory() as scratch:
        # A held-out validation set needs the best weights even without -s.
        best_weights = files.weights if files else None
        if args.validation_split and best_weights is None:
            best_weights = Path(scratch) / "best.weights.h5"
        result = train(
            model,
            fit_data,
            config,
            best_weights_path=best_weights,
            csv_log_path=files.log if files else None,
            backup_dir=backup_dir(files) if files else None,
        )
        print(
            f"Best validation accuracy {result.best_val_accuracy:.4f} at epoch "
            f"{result.best_epoch} of {len(result.epoch_seconds)} ({result.stop_reason})"
        )
        validation = _validation_summary(args, model, best_weights, data, fit_data, batch_size)
    if files is not None:
        validation["devices"] = list(place.devices)
        validation["dtype_policy"] = place.policy
        _save(args, model, data, config, arch, result, files, started, validation)
    return result.interrupted_by


def _hold_out(args: argparse.Namespace, data):
    if not args.validation_split:
        return data
    from brainprop.validation import hold_out

    return hold_out(data, args.validation_split)


def _validation_summary(args, model, best_weights, data, fit_data, batch_size) -> dict:
    """What was validated on, and the test accuracy of the best epoch when held out."""
    if not args.validation_split:
        return {"validation": "test set", "validation_split": None}
    from brainprop.validation import SPLIT_SEED, best_epoch_test_accuracy

    accuracy = best_epoch_test_accuracy(model, best_weights, data, batch_size)
    if accuracy is not None:
        print(f"Test accuracy at the best validation epoch: {accuracy:.4f}")
    return {
        "validation": f"{args.validation_split:g} of the training set held out "
        f"(split seed {SPLIT_SEED})",
        "validation_split": args.validation_split,
        "validation_images": int(len(fit_data.y_test)),
        "train_images": int(len(fit_data.y_train)),
        "test_accuracy_at_best_epoch": accuracy,
    }


def _save(args, model, data, config, arch, result, files, started, validation) -> None:
    import keras

    from brainprop.outputs import plot_accuracy, write_history, write_summary

    plot_accuracy(
        result.history,
        f"{args.dataset} {args.architecture} {args.algorithm}",
        files.plot_pdf,
        files.plot_png,
    )
    write_history(files.history, args.dataset, args.algorithm, result.history)
    summary = {
        "dataset": args.dataset,
        "architecture": args.architecture,
        "algorithm": args.algorithm,
        "seed": args.seed,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "total_params": int(model.count_params()),
        "n_classes": data.n_classes,
        "train_images": int(len(data.y_train)),
        "test_images": int(len(data.y_test)),
        "epochs_run": len(result.epoch_seconds),
        "best_epoch": result.best_epoch,
        "best_val_accuracy": (
            result.best_val_accuracy if math.isfinite(result.best_val_accuracy) else None
        ),
        "stop_reason": result.stop_reason,
        "interrupted": result.interrupted_by is not None,
        "resumed": bool(args.resume),
        "epoch_seconds": [round(s, 4) for s in result.epoch_seconds],
        "hyperparameters": {
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "lr_schedule": "learning_rate * 0.5 ** (epoch // 100)",
            "init_std": arch.init_std,
            "l2": arch.l2,
            "padding": arch.padding,
            "max_epochs": config.epochs,
            "patience": config.patience,
            "min_delta": config.min_delta,
            "optimizer": "SGD, no momentum",
            "epsilon": getattr(model, "epsilon", None),
        },
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": args.command,
        "files": {k: v for k, v in files.names().items() if getattr(files, k).exists() or k == "summary"},
    }
    summary.update(validation)
    write_summary(files.summary, summary)
    print(f"Saved {', '.join(summary['files'].values())} in {files.stem.parent}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command = " ".join(["python main.py", *argv])
    try:
        return _run(args)
    except BrainPropError as error:
        print(f"main.py: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # before training started: nothing to save
        print("main.py: interrupted before training started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
