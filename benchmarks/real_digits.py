"""Learning on real images, on each backend: scikit-learn's handwritten digits as MNIST.

scikit-learn ships 1,797 real 8x8 handwritten digits (`load_digits`, no download); they
are upscaled to 28x28 (nearest neighbour, 0-16 scaled to 0-255) and written as
`mnist.npz` (1,400 to train, 397 to test), then, for each backend, network and rule,

    KERAS_BACKEND=<backend> python main.py MNIST <network> <rule> -s --epochs N --data-dir D

runs in a fresh process; the accuracies per epoch come from the run's history file.

    pip install scikit-learn      # benchmarks/requirements.txt
    python benchmarks/real_digits.py --backends tensorflow torch --json digits.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_digits(folder: Path, train: int = 1400) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    images = np.kron(images, np.ones((3, 3), np.uint8))  # 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28x28, as MNIST's centred digits
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype(np.uint8)
    np.savez(folder / "mnist.npz", x_train=images[:train], y_train=labels[:train],
             x_test=images[train:], y_test=labels[train:])


def run(backend: str, network: str, rule: str, epochs: int, seed: int, data: Path,
        out: Path) -> dict:
    command = [sys.executable, str(ROOT / "main.py"), "MNIST", network, rule, "-s",
               "--epochs", str(epochs), "--seed", str(seed), "--data-dir", str(data),
               "--output-dir", str(out), "--verbose", "2"]
    print(f"$ KERAS_BACKEND={backend}", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr,
                   env={**os.environ, "KERAS_BACKEND": backend})
    history = json.loads(next(out.glob("*_history.json")).read_text())["history"]
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    row = {"backend": backend, "network": network, "rule": rule, "seed": seed,
           "accuracy": history["accuracy"], "val_accuracy": history["val_accuracy"],
           "best_epoch": summary["best_epoch"],
           "best_val_accuracy": summary["best_val_accuracy"]}
    print(f"  training accuracy {row['accuracy'][-1]:.3f}, validation accuracy by epoch "
          + " ".join(f"{a:.3f}" for a in row["val_accuracy"]), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--networks", nargs="+", default=["conv"])
    parser.add_argument("--rules", nargs="+", default=["BrainProp", "EBP"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        write_digits(data)
        for network in args.networks:
            for rule in args.rules:
                for backend in args.backends:
                    out = Path(tmp) / f"{backend}-{network}-{rule}"
                    rows.append(run(backend, network, rule, args.epochs, args.seed, data, out))

    print("\n| network | rule | backend | training accuracy, last epoch | validation "
          "accuracy by epoch | best epoch (validation accuracy) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['network']} | {row['rule']} | {row['backend']} | "
              f"{row['accuracy'][-1]:.3f} | "
              + " ".join(f"{a:.2f}" for a in row["val_accuracy"])
              + f" | {row['best_epoch']} ({row['best_val_accuracy']:.3f}) |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
