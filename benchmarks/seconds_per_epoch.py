"""Seconds per epoch of each network, end to end, as a user times them.

Writes MNIST and CIFAR10 of their real sizes (60,000 and 50,000 training images, 10,000
test images) with random pixels in the real file formats, then runs, for each network,

    python main.py <dataset> <network> BrainProp -s --epochs 2 --data-dir <synthetic>

in a fresh process and reads the epochs' seconds (training and validation) from the run
summary. The first epoch includes compilation; the second is the figure. The pixels do not
change the work done, so the times are those of the real data sets.

    python benchmarks/seconds_per_epoch.py [--only MNIST/dense ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ["MNIST/dense", "MNIST/conv", "MNIST/loccon", "CIFAR10/conv", "CIFAR10/loccon",
        "CIFAR10/deep"]


def write_mnist(folder: Path, rng) -> None:
    def split(n):
        return rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n, np.uint8)

    (x_train, y_train), (x_test, y_test) = split(60_000), split(10_000)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)


def write_cifar10(folder: Path, rng) -> None:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        content = {b"data": rng.integers(0, 256, (10_000, 3072), np.uint8),
                   b"labels": rng.integers(0, 10, 10_000).tolist()}
        with open(batches / name, "wb") as f:
            pickle.dump(content, f)


def time_run(dataset: str, network: str, data: Path, out: Path) -> dict:
    command = [sys.executable, str(ROOT / "main.py"), dataset, network, "BrainProp", "-s",
               "--epochs", "2", "--data-dir", str(data), "--output-dir", str(out),
               "--verbose", "2"]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr)
    summary = json.loads(next(out.glob(f"{dataset}_{network}_*_summary.json")).read_text())
    first, second = summary["epoch_seconds"]
    return {"dataset": dataset, "network": network, "batch": summary["hyperparameters"]
            ["batch_size"], "first_epoch_s": first, "epoch_s": second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=RUNS, metavar="DATASET/NETWORK")
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        write_mnist(data, rng)
        write_cifar10(data, rng)
        for number, entry in enumerate(args.only):
            dataset, network = entry.split("/")
            out = Path(scratch) / f"out{number}"
            rows.append(time_run(dataset, network, data, out))
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    machine = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
               "backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    print(f"\n{machine}\n\n| data set | network | batch | s/epoch | first epoch (compiles) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['dataset']} | {row['network']} | {row['batch']} | "
              f"{row['epoch_s']:.0f} | {row['first_epoch_s']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
