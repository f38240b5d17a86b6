"""Whole epochs as a user runs them: this project's `main.py` against the original release's.

Each contender trains in its own process, on the same synthetic data written in the
standard files (`mnist.npz`, `cifar-10-batches-py/`), with the same batch size:

* `release`: the authors' `main.py`, run from `--release-dir` (your clone of the original
  release) on today's TensorFlow through Keras 2 (`tf_keras`, `TF_USE_LEGACY_KERAS=1`).
  Nothing of it is copied: its `main.py` runs as it is, with three changes made at run
  time in its process: `tf_utils.smart_cond`, which moved, is pointed at tf_keras'
  `control_flow_util.smart_cond`; `keras.datasets` reads the synthetic files instead of
  downloading; and `fit` runs `--epochs` epochs instead of 500.  It trains as the release
  does: `fit` on float arrays (divided by 255) with `validation_data`, `verbose=2`.
* `ours-tensorflow`, `ours-jax`, `ours-torch`: this project's `main.py` with `-s` (best
  weights, CSV log and a backup of the run written every epoch), `--epochs`, `--data-dir`
  and `--output-dir` (a scratch folder), under each Keras backend.
* `ours-tensorflow-bfloat16`, `ours-jax-bfloat16`, `ours-torch-bfloat16` (asked for by
  `--contenders`): the same with `--mixed-precision bfloat16`; the table also gives each
  one's epoch against its backend's float32 epoch.

In every process `fit`'s callback list is timed (it is the same for both Keras versions):
an epoch runs from one `on_epoch_begin` to the next (or to `on_train_end`); its *train*
part ends when validation begins (`on_test_begin`), so it holds the train steps, the input
pipeline and the per-step callbacks (progress bar); *validation* ends at `on_test_end`;
*other* is the rest: every epoch-end callback (checkpoint, backup, CSV log, early stopping,
progress line) and the start of the next epoch.  The first epoch compiles and is not
counted; the figures are the means of epochs 2 to `--epochs`.

The machine may be shared, so the contenders alternate: in each round every row runs
each contender once, in an order that rotates from row to row and round to round, and
each ratio ours / release is taken within a round, then the median over rounds.

    python benchmarks/epoch_vs_release.py --quick          # under 10 minutes
    python benchmarks/epoch_vs_release.py --rounds 2       # the figures in RESULTS.md
    python benchmarks/epoch_vs_release.py --quick --architectures conv deep --rules BrainProp \
        --contenders release ours-tensorflow ours-tensorflow-bfloat16   # bfloat16

The table is printed and written into benchmarks/RESULTS.md (its own section for
`--quick` and for full runs; `--no-write` to skip), the raw timings into `--json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"

ARCHITECTURES = ("dense", "conv", "loccon", "deep")
DATASET_OF = {"dense": "MNIST", "conv": "CIFAR10", "loccon": "CIFAR10", "deep": "CIFAR10"}
RULES = ("BrainProp", "EBP")
PARTS = ("total", "train", "validation", "other", "cpu")
FLOAT32_CONTENDERS = ("release", "ours-tensorflow", "ours-jax", "ours-torch")
BFLOAT16 = "-bfloat16"  # a contender's suffix: the same backend under --mixed-precision bfloat16
CONTENDERS = FLOAT32_CONTENDERS + tuple(f"{c}{BFLOAT16}" for c in FLOAT32_CONTENDERS[1:])

# (training, test) images: CIFAR10's 10,000 / 2,000, as first measured, for every row.
FULL_IMAGES = {arch: (10_000, 2_000) for arch in ARCHITECTURES}
# --quick: fewer images where an epoch is slow on a 2-core CPU, so that all 24 runs
# (4 architectures x 2 rules x 3 contenders) fit in 10 minutes.
QUICK_IMAGES = {"dense": (10_000, 2_000), "conv": (4_000, 1_000), "loccon": (2_000, 500),
                "deep": (1_000, 250)}


# --- the child processes ------------------------------------------------------------------


class Marks:
    """Times of the callback list's epoch events during the first `fit` of a process."""

    EVENTS = {  # event -> timed at the method's entry (True) or its exit (False)
        "on_epoch_begin": True,
        "on_test_begin": True,
        "on_test_end": False,
        "on_epoch_end": False,
        "on_train_end": True,
    }

    def __init__(self):
        self.marks: list[tuple[str, float, float]] = []  # event, wall, process CPU
        self.done = False
        # Seconds of each callback's on_epoch_end, per epoch, by the callback's class.
        self.epoch_end_seconds: dict[str, list[float]] = {}

    def instrument(self, callback_list_class) -> None:
        for name, at_entry in self.EVENTS.items():
            setattr(callback_list_class, name, self._timed(
                getattr(callback_list_class, name), name, at_entry))
        on_train_begin = callback_list_class.on_train_begin
        marks = self

        def time_each_callback(callback_list, *args, **kwargs):
            if not marks.done:
                for callback in callback_list.callbacks:
                    marks._time_epoch_end(callback)
            return on_train_begin(callback_list, *args, **kwargs)

        callback_list_class.on_train_begin = time_each_callback

    def _time_epoch_end(self, callback) -> None:
        method, seconds = callback.on_epoch_end, []
        self.epoch_end_seconds[type(callback).__name__] = seconds

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

        callback.on_epoch_end = timed

    def _timed(self, method, name, at_entry):
        marks = self

        def timed(callback_list, *args, **kwargs):
            if at_entry and not marks.done:
                marks.marks.append((name, time.perf_counter(), time.process_time()))
            result = method(callback_list, *args, **kwargs)
            if not at_entry and not marks.done:
                marks.marks.append((name, time.perf_counter(), time.process_time()))
            if name == "on_train_end":
                marks.done = True  # later evaluate() calls are not epochs
            return result

        return timed

    def epochs(self) -> list[dict[str, float]]:
        """Seconds of each epoch: total, train, validation, other, and CPU seconds."""
        epochs, current = [], None
        for name, at, cpu in self.marks:
            if name in ("on_epoch_begin", "on_train_end") and current is not None:
                total = at - current["on_epoch_begin"]
                train = current.get("on_test_begin", at) - current["on_epoch_begin"]
                validation = current.get("on_test_end", current.get("on_test_begin", at)) - (
                    current.get("on_test_begin", at))
                epochs.append({"total": total, "train": train, "validation": validation,
                               "other": total - train - validation,
                               "cpu": cpu - current["cpu"]})
                current = None
            if name == "on_epoch_begin":
                current = {name: at, "cpu": cpu}
            elif current is not None:
                current.setdefault(name, at)
        return epochs


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_ours(args) -> Marks:
    """This project's main.py, as a user runs it, with `-s`."""
    _quiet_tensorflow()
    sys.path.insert(0, str(REPO))
    from brainprop.utils.backend import start

    keras = start()  # as main.py starts it, before the callbacks are instrumented
    marks = Marks()
    marks.instrument(keras.callbacks.CallbackList)
    sys.argv = ["main.py", args.dataset, args.arch, args.rule, "-s", "--epochs",
                str(args.epochs), "--data-dir", args.data_dir, "--output-dir", args.output_dir]
    if args.child.endswith(BFLOAT16):
        sys.argv += ["--mixed-precision", "bfloat16"]
    try:
        runpy.run_path(str(REPO / "main.py"), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    return marks


def run_release(args) -> Marks:
    """The release's main.py through tf_keras, reading the synthetic files."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("the release runs through tf_keras: set TF_USE_LEGACY_KERAS=1")
    _quiet_tensorflow()
    import tensorflow as tf
    import tf_keras
    from tensorflow.python.keras.utils import tf_utils
    from tf_keras.src.datasets.cifar import load_batch
    from tf_keras.src.utils import control_flow_util

    # The one import the release needs changed on today's TensorFlow (its ABOUT.md).
    tf_utils.smart_cond = control_flow_util.smart_cond

    data_dir = Path(args.data_dir)

    def mnist():
        with np.load(data_dir / "mnist.npz") as npz:
            return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])

    def cifar10():  # as tf_keras' cifar10.load_data, from the local folder
        folder = data_dir / "cifar-10-batches-py"
        parts = [load_batch(str(folder / f"data_batch_{i}")) for i in range(1, 6)]
        x_train = np.concatenate([x for x, _ in parts]).transpose(0, 2, 3, 1)
        y_train = np.concatenate([y for _, y in parts]).reshape(-1, 1)
        x_test, y_test = load_batch(str(folder / "test_batch"))
        return (x_train, y_train), (x_test.transpose(0, 2, 3, 1), np.reshape(y_test, (-1, 1)))

    tf.keras.datasets.mnist.load_data = mnist
    tf.keras.datasets.cifar10.load_data = cifar10

    marks = Marks()
    marks.instrument(tf_keras.callbacks.CallbackList)
    fit = tf_keras.Model.fit

    def fit_for_epochs(model, *fit_args, **kwargs):
        kwargs["epochs"] = args.epochs  # the release trains for 500
        return fit(model, *fit_args, **kwargs)

    tf_keras.Model.fit = fit_for_epochs
    release = Path(args.release_dir).resolve()
    os.chdir(release)  # its main.py imports its modules from the current directory
    sys.path.insert(0, str(release))
    sys.argv = ["main.py", args.dataset, args.arch, args.rule]
    runpy.run_path(str(release / "main.py"), run_name="__main__")
    return marks


def child(args) -> None:
    start = time.perf_counter()
    marks = run_release(args) if args.child == "release" else run_ours(args)
    Path(args.timings).write_text(json.dumps(
        {"epochs": marks.epochs(), "epoch_end_seconds": marks.epoch_end_seconds,
         "process_seconds": time.perf_counter() - start}))


# --- the parent: data, rounds, table ------------------------------------------------------


def write_data(folder: Path, images: dict[str, tuple[int, int]], seed: int = 0) -> dict:
    """Synthetic MNIST and CIFAR10 in the standard files, one folder per size."""
    rng = np.random.default_rng(seed)
    folders = {}
    for arch in ARCHITECTURES:
        n_train, n_test = images[arch]
        dataset = DATASET_OF[arch]
        target = folder / f"{dataset}_{n_train}_{n_test}"
        folders[arch] = target
        if target.exists():
            continue
        target.mkdir(parents=True)
        if dataset == "MNIST":
            np.savez(target / "mnist.npz",
                     x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                     y_train=rng.integers(0, 10, n_train).astype(np.uint8),
                     x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                     y_test=rng.integers(0, 10, n_test).astype(np.uint8))
            continue
        batches = target / "cifar-10-batches-py"
        batches.mkdir()
        per_file = [n_train // 5 + (i < n_train % 5) for i in range(5)]
        for name, n in [*((f"data_batch_{i + 1}", k) for i, k in enumerate(per_file)),
                        ("test_batch", n_test)]:
            content = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                       b"labels": rng.integers(0, 10, n).tolist()}
            with open(batches / name, "wb") as f:
                pickle.dump(content, f)
    return folders


def run_contender(contender, arch, rule, data_dir, epochs, release_dir, scratch) -> dict:
    """One process, one contender; its timings, or the tail of its log if it failed."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    if contender == "release":
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env["KERAS_BACKEND"] = contender.removeprefix("ours-").removesuffix(BFLOAT16)
    tag = f"{arch}_{rule}_{contender}_{time.monotonic_ns()}"
    timings, log = scratch / f"{tag}.json", scratch / f"{tag}.log"
    output_dir = scratch / tag
    output_dir.mkdir()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", contender,
               "--dataset", DATASET_OF[arch], "--arch", arch, "--rule", rule,
               "--epochs", str(epochs), "--data-dir", str(data_dir),
               "--output-dir", str(output_dir), "--release-dir", str(release_dir),
               "--timings", str(timings)]
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                               cwd=REPO)
    if code != 0 or not timings.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{contender} {arch} {rule} failed (exit {code}); log {log}:\n{tail}")
    result = json.loads(timings.read_text())
    if len(result["epochs"]) != epochs:
        raise RuntimeError(f"{contender} {arch} {rule}: {len(result['epochs'])} epochs timed, "
                           f"expected {epochs}; log {log}")
    return result


def mean_parts(result: dict) -> dict:
    """Means over the counted epochs: the parts, and each callback's epoch end."""
    counted = result["epochs"][1:]  # the first epoch compiles
    parts = {part: statistics.fmean(e[part] for e in counted) for part in PARTS}
    parts["callbacks"] = {name: statistics.fmean(seconds[1:])
                          for name, seconds in result.get("epoch_end_seconds", {}).items()
                          if len(seconds) > 1}
    return parts


def summarize(runs: dict, rows, contenders) -> list[dict]:
    """Per row and contender: median over rounds of each part; ratios within rounds."""
    table = []
    for arch, rule in rows:
        for contender in contenders:
            rounds = runs[(arch, rule, contender)]
            parts = {part: statistics.median(r[part] for r in rounds) for part in PARTS}
            row = {"architecture": arch, "dataset": DATASET_OF[arch], "rule": rule,
                   "contender": contender, "rounds": len(rounds), **parts,
                   "other_share": parts["other"] / parts["total"],
                   "callbacks": {name: statistics.median(r["callbacks"].get(name, 0.0)
                                                         for r in rounds)
                                 for name in rounds[0]["callbacks"]},
                   "epoch_seconds_by_round": [round(r["total"], 3) for r in rounds]}
            release = runs.get((arch, rule, "release"))
            if contender != "release" and release:
                row["ratio"] = statistics.median(
                    r["total"] / b["total"] for r, b in zip(rounds, release, strict=True))
                row["cpu_ratio"] = statistics.median(
                    r["cpu"] / b["cpu"] for r, b in zip(rounds, release, strict=True))
            tensorflow = runs.get((arch, rule, "ours-tensorflow"))
            if contender not in ("release", "ours-tensorflow") and tensorflow:
                row["tensorflow_ratio"] = statistics.median(
                    r["total"] / t["total"] for r, t in zip(rounds, tensorflow, strict=True))
            float32 = runs.get((arch, rule, contender.removesuffix(BFLOAT16)))
            if contender.endswith(BFLOAT16) and float32:
                row["float32_ratio"] = statistics.median(
                    r["total"] / f["total"] for r, f in zip(rounds, float32, strict=True))
            table.append(row)
    return table


def markdown(table, images, args, machine) -> str:
    command = "python benchmarks/epoch_vs_release.py " + " ".join(args.argv)
    lines = [
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['versions']}; "
        f"{machine['date']}. Load average at the start {machine['load_start']}, at the end "
        f"{machine['load_end']}" + (
            " (above the core count: other work shared the machine, so absolute times are "
            "noisy; the ratios compare contenders that took turns)."
            if max(float(machine["load_start"]), float(machine["load_end"]))
            > (machine["cores"] or 1)
            else " (at most the core count: the machine was otherwise quiet)."),
        "",
        f"Epochs 2 to {args.epochs} of each run (the first compiles), mean seconds per epoch; "
        f"median over {args.rounds} round(s). Images (training / test): "
        + ", ".join(f"{arch} {images[arch][0]:,} / {images[arch][1]:,}" for arch in
                    dict.fromkeys(r["architecture"] for r in table)) + ".",
        "",
        "| architecture | rule | contender | epoch s | train s | validation s | other s "
        "| other % | ours / release | CPU s | CPU ours / release | / ours-tensorflow "
        "| bfloat16 / float32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        ratio = f"**{row['ratio']:.2f}**" if "ratio" in row else ""
        cpu_ratio = f"{row['cpu_ratio']:.2f}" if "cpu_ratio" in row else ""
        tensorflow_ratio = (f"{row['tensorflow_ratio']:.2f}" if "tensorflow_ratio" in row
                            else "")
        float32_ratio = f"{row['float32_ratio']:.2f}" if "float32_ratio" in row else ""
        lines.append(
            f"| {row['dataset']} {row['architecture']} | {row['rule']} | {row['contender']} "
            f"| {row['total']:.2f} | {row['train']:.2f} | {row['validation']:.2f} "
            f"| {row['other']:.3f} | {100 * row['other_share']:.1f} | {ratio} "
            f"| {row['cpu']:.2f} | {cpu_ratio} | {tensorflow_ratio} | {float32_ratio} |")
    lines += [
        "",
        "Where *other* goes: seconds per epoch in each callback's `on_epoch_end` "
        "(those above 1 ms), same runs.",
        "",
        "| architecture | rule | contender | callbacks at the end of an epoch |",
        "| --- | --- | --- | --- |",
    ]
    for row in table:
        spent = sorted(row["callbacks"].items(), key=lambda item: -item[1])
        cells = ", ".join(f"{name} {seconds:.3f}" for name, seconds in spent if seconds >= 1e-3)
        lines.append(f"| {row['dataset']} {row['architecture']} | {row['rule']} "
                     f"| {row['contender']} | {cells or 'none above 1 ms'} |")
    return "\n".join(lines) + "\n"


def write_results(section: str, text: str, path: Path) -> None:
    """Replace (or append) this mode's section of RESULTS.md, between its markers."""
    begin = f"<!-- epoch_vs_release {section}: begin (written by the script) -->"
    end = f"<!-- epoch_vs_release {section}: end -->"
    block = f"{begin}\n{text}{end}"
    content = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        mode, _, precision = section.partition(" ")
        title = ("--quick" if mode == "quick" else "full run") + (f", {precision}" if precision else "")
        content = content.rstrip("\n") + (
            f"\n\n### Epochs against the release, {title} (benchmarks/epoch_vs_release.py)\n\n"
            f"{block}\n")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(content)
    os.replace(tmp, path)


def machine_info() -> dict:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for module in ("tensorflow", "tf_keras", "keras", "jax", "torch"):
        try:
            from importlib.metadata import version

            versions.append(f"{module} {version(module.replace('_', '-'))}")
        except Exception:
            versions.append(f"{module} missing")
    return {"cpu": cpu, "cores": os.cpu_count(),
            "versions": f"Python {platform.python_version()}, " + ", ".join(versions),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_start": f"{os.getloadavg()[0]:.1f}"}


def parent(args) -> None:
    images = QUICK_IMAGES if args.quick else FULL_IMAGES
    release_dir = Path(args.release_dir).resolve()
    if "release" in args.contenders and not (release_dir / "main.py").is_file():
        raise SystemExit(f"no main.py in --release-dir {release_dir}: pass the folder of "
                         "your clone of the original release")
    rows = [(arch, rule) for arch in args.architectures for rule in args.rules]
    machine = machine_info()
    runs: dict = {(a, r, c): [] for a, r in rows for c in args.contenders}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="epoch_vs_release_") as scratch_name:
        scratch = Path(scratch_name)
        folders = write_data(scratch / "data", images)
        turn = 0
        for round_ in range(args.rounds):
            for arch, rule in rows:
                order = list(args.contenders)
                shift = turn % len(order)  # rotate who goes first
                turn += 1
                for contender in order[shift:] + order[:shift]:
                    result = run_contender(contender, arch, rule, folders[arch], args.epochs,
                                           release_dir, scratch)
                    parts = mean_parts(result)
                    runs[(arch, rule, contender)].append(parts)
                    print(f"[{time.perf_counter() - started:6.0f} s] round {round_ + 1}: "
                          f"{DATASET_OF[arch]} {arch} {rule} {contender}: "
                          f"{parts['total']:.2f} s/epoch (train {parts['train']:.2f}, "
                          f"validation {parts['validation']:.2f}, other {parts['other']:.3f}; "
                          f"CPU {parts['cpu']:.2f} s)",
                          flush=True)
    machine["load_end"] = f"{os.getloadavg()[0]:.1f}"
    table = summarize(runs, rows, args.contenders)
    text = markdown(table, images, args, machine)
    print()
    print(text)
    print(f"Ratio < 1: ours is faster. Total {time.perf_counter() - started:.0f} s.")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine, "images": images, "epochs": args.epochs,
             "rounds": args.rounds, "table": table}, indent=2) + "\n")
    if not args.no_write:
        section = "quick" if args.quick else "full"
        if any(contender.endswith(BFLOAT16) for contender in args.contenders):
            section += " bfloat16"
        write_results(section, text, Path(args.results))
        print(f"Written into {args.results}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release-dir", default=str(REPO.parent / "shared" / "release"),
                        help="the original release's folder (default: ../shared/release)")
    parser.add_argument("--quick", action="store_true",
                        help="one round on fewer images for conv, loccon and deep "
                        "(under 10 minutes on 2 cores)")
    parser.add_argument("--rounds", type=int, help="rounds of alternation (default: 2, "
                        "1 with --quick)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per run, the first not counted (default: 3)")
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES,
                        default=list(ARCHITECTURES))
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS,
                        default=list(FLOAT32_CONTENDERS))
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--results", default=str(RESULTS),
                        help="the Markdown file to write the table into")
    parser.add_argument("--no-write", action="store_true", help="print only")
    # In a child process: which contender to run, and where.
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    for name in ("--dataset", "--arch", "--rule", "--data-dir", "--output-dir", "--timings"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.child:
        child(args)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch compiles")
    args.rounds = args.rounds or (1 if args.quick else 2)
    parent(args)


if __name__ == "__main__":
    main()
