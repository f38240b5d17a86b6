"""A table of several runs with `--jobs N` against `--jobs 1`: wall time, end to end.

Each trial is the command a user types, `python -m brainprop.reproduce table1 ...` in a
fresh runs folder on synthetic MNIST-shaped data (learnable, written here), timed from
start to exit (report included).  The contenders take turns, the order rotating each
repeat, and the medians are compared.

    python benchmarks/jobs.py --runs MNIST/dense --seeds 1-2 --epochs 3 --jobs 2 \
        --repeats 2 --json jobs_tf.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def write_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 10, n).astype("uint8")
        images = rng.integers(0, 90, (n, 28, 28)).astype("uint8")
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 5 + 2 * label, 4:24] = 230
        return images, labels

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    return folder


def trial(args, data: Path, jobs: int, scratch: Path) -> float:
    runs = scratch / f"runs_jobs{jobs}"
    shutil.rmtree(runs, ignore_errors=True)
    command = [sys.executable, "-m", "brainprop.reproduce", "table1", "--only", *args.runs,
               "--seeds", args.seeds, "--epochs", str(args.epochs), "--data-dir", str(data),
               "--runs-dir", str(runs), "--jobs", str(jobs)]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    print(f"--jobs {jobs}: {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["MNIST/dense"])
    parser.add_argument("--seeds", default="1-2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--jobs", type=int, default=2, help="compared with --jobs 1")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = write_mnist(scratch / "data", args.n_train, 1000)
        times: dict[int, list[float]] = {1: [], args.jobs: []}
        for repeat in range(args.repeats):
            order = [1, args.jobs] if repeat % 2 == 0 else [args.jobs, 1]
            for jobs in order:
                times[jobs].append(trial(args, data, jobs, scratch))
    one, many = statistics.median(times[1]), statistics.median(times[args.jobs])
    result = {
        "machine": common.machine(),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "runs": args.runs, "seeds": args.seeds, "epochs": args.epochs,
        "n_train": args.n_train, "jobs": args.jobs,
        "seconds_jobs1": times[1], f"seconds_jobs{args.jobs}": times[args.jobs],
        "median_jobs1": one, f"median_jobs{args.jobs}": many,
        "speedup": one / many,
    }
    print(f"median wall time: --jobs 1 {one:.1f} s, --jobs {args.jobs} {many:.1f} s: "
          f"{one / many:.2f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
