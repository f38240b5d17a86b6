"""Validation on small real data sets, with each kind of BatchNormalization statistics.

Two sets cut from the full Fashion-MNIST (its four gzipped idx files, as the Debian package
`dataset-fashion-mnist` installs them in /usr/share/datasets/fashion-mnist), in their real
formats:

* `idx/fashion-mnist/`: the first 4,000 training images and the first 1,000 test images,
  as gzipped idx files (`main.py FashionMNIST ... --data-dir idx`);
* `photos/`: 200 training and 40 test images of each class as PNG files in
  `train/<class>/` and `test/<class>/` (an image folder, 2,400 files).

Then, for each backend and each `--batchnorm-statistics`, `conv EBP` trains 2 epochs on
the first and 3 on the second, each in a fresh process, and the accuracies per epoch are
printed (training, validation):

    python benchmarks/small_real_sets.py /usr/share/datasets/fashion-mnist \\
        --backends tensorflow torch jax
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: Path) -> np.ndarray:
    """A gzipped idx file of unsigned bytes (MNIST's format)."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_fashion_mnist(source: Path) -> dict[str, np.ndarray]:
    """The four arrays of the full Fashion-MNIST, from the folder of its idx files."""
    return {key: read_idx(source / name) for key, name in FILES.items()}


def write_idx_subset(arrays: dict[str, np.ndarray], folder: Path, train: int = 4000,
                     test: int = 1000) -> Path:
    """The first `train` and `test` images as `folder/fashion-mnist/*.gz` (what
    `--data-dir folder` reads); returns `folder`."""
    (folder / "fashion-mnist").mkdir(parents=True, exist_ok=True)
    for key, name in FILES.items():
        array = arrays[key][: train if key.endswith("train") else test]
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
            n.to_bytes(4, "big") for n in array.shape)
        (folder / "fashion-mnist" / name).write_bytes(
            gzip.compress(header + array.tobytes(), compresslevel=1))
    return folder


def write_photo_folder(arrays: dict[str, np.ndarray], folder: Path, train: int = 200,
                       test: int = 40) -> Path:
    """The first `train` training and `test` test images of each class as PNG files in
    `folder/train/class<k>/` and `folder/test/class<k>/`; returns `folder`."""
    for split, count in (("train", train), ("test", test)):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        for label in range(10):
            target = folder / split / f"class{label}"
            target.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(np.flatnonzero(labels == label)[:count]):
                Image.fromarray(images[index]).save(target / f"{i:04d}.png")
    return folder


def run(backend: str, dataset: list[str], epochs: int, statistics: str, out: Path) -> dict:
    """One run in a fresh process: its history (accuracy and val_accuracy per epoch)."""
    command = [sys.executable, str(ROOT / "main.py"), *dataset, "conv", "EBP", "-s",
               "--epochs", str(epochs), "--batchnorm-statistics", statistics,
               "--output-dir", str(out), "--verbose", "2"]
    print(f"$ KERAS_BACKEND={backend}", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr,
                   env={**os.environ, "KERAS_BACKEND": backend})
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    return json.loads((out / summary["files"]["history_json"]).read_text())["history"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the folder of Fashion-MNIST's idx files")
    parser.add_argument("--backends", nargs="+", default=["tensorflow"])
    args = parser.parse_args()
    arrays = read_fashion_mnist(args.source)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cases = {
            "4,000 idx images, 2 epochs": (
                ["FashionMNIST", "--data-dir", str(write_idx_subset(arrays, scratch / "idx"))], 2),
            "2,000 photos, 3 epochs": (
                [str(write_photo_folder(arrays, scratch / "photos"))], 3),
        }
        for backend in args.backends:
            for case, (dataset, epochs) in cases.items():
                for statistics in ("release", "epoch"):
                    out = scratch / f"{backend}-{statistics}-{epochs}"
                    history = run(backend, dataset, epochs, statistics, out)
                    pairs = ", ".join(f"{t:.3f}/{v:.3f}" for t, v in
                                      zip(history["accuracy"], history["val_accuracy"],
                                          strict=True))
                    print(f"{backend:10} {case:26} {statistics:7} training/validation: {pairs}",
                          flush=True)


if __name__ == "__main__":
    main()
