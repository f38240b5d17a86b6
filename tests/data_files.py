"""Writers of MNIST and CIFAR in their real on-disk formats, for the tests (NumPy only)."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np

from brainprop.data.standard import MNIST_IDX_FILES

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def images(n: int, shape: tuple, seed: int) -> np.ndarray:
    """Random uint8 images: any mix-up of pixels or channels changes the values."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def labels(n: int, n_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, n)


def mnist_arrays(n_train: int, n_test: int, seed: int, **override) -> dict:
    """MNIST-shaped uint8 arrays (seeds `seed` to `seed + 3`), with `override` replacing any."""
    arrays = {
        "x_train": images(n_train, (28, 28), seed),
        "y_train": labels(n_train, 10, seed + 1).astype(np.uint8),
        "x_test": images(n_test, (28, 28), seed + 2),
        "y_test": labels(n_test, 10, seed + 3).astype(np.uint8),
    }
    arrays.update(override)
    return arrays


def write_mnist(folder: Path, n_train=7, n_test=3, **override) -> dict:
    arrays = mnist_arrays(n_train, n_test, 1, **override)
    np.savez_compressed(folder / "mnist.npz", **arrays)
    return arrays


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) in the idx format of the MNIST distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        n.to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_mnist_idx(folder: Path, gz=(False,) * 4, n_train=7, n_test=3, **override) -> dict:
    """The four files as the MNIST distribution has them (each gzipped where `gz` says)."""
    arrays = mnist_arrays(n_train, n_test, 5, **override)
    for (key, name), zipped in zip(MNIST_IDX_FILES.items(), gz, strict=True):
        content = idx_bytes(arrays[key])
        if zipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return arrays


def cifar_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) images as CIFAR's rows: all red values, then green, then blue."""
    rows = np.empty((len(x), 3072), np.uint8)
    for channel in range(3):
        rows[:, channel * 1024 : (channel + 1) * 1024] = x[..., channel].reshape(len(x), 1024)
    return rows


def cifar_pickle(path: Path, entries: dict) -> None:
    """A pickle like the originals: a dict with bytes keys, protocol 2."""
    with open(path, "wb") as f:
        pickle.dump({k.encode(): v for k, v in entries.items()}, f, protocol=2)


def write_cifar10(folder: Path, sizes=(3, 1, 4, 2, 5), n_test=3) -> dict:
    """cifar-10-batches-py/ with batches of unequal sizes; returns the expected arrays."""
    directory = folder / "cifar-10-batches-py"
    directory.mkdir()
    x_parts, y_parts = [], []
    for i, (name, n) in enumerate(zip(CIFAR10_TRAIN + ("test_batch",), sizes + (n_test,), strict=True)):
        x, y = images(n, (32, 32, 3), 10 + i), labels(n, 10, 20 + i)
        entries = {"batch_label": b"batch", "data": cifar_rows(x), "labels": y.tolist()}
        entries["filenames"] = [b"f.png"] * n
        cifar_pickle(directory / name, entries)
        x_parts.append(x)
        y_parts.append(y)
    (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}))
    (directory / "readme.html").write_text("<html></html>")
    return {
        "x_train": np.concatenate(x_parts[:-1]),
        "y_train": np.concatenate(y_parts[:-1]),
        "x_test": x_parts[-1],
        "y_test": y_parts[-1],
    }


def write_cifar100(folder: Path, n_train=6, n_test=4) -> dict:
    directory = folder / "cifar-100-python"
    directory.mkdir()
    expected = {}
    for i, (name, n) in enumerate((("train", n_train), ("test", n_test))):
        x, fine = images(n, (32, 32, 3), 30 + i), labels(n, 100, 40 + i)
        coarse = (fine + 1) % 20  # differs from fine, so a mix-up is caught
        entries = {"filenames": [b"f.png"] * n, "batch_label": b"b", "data": cifar_rows(x)}
        entries.update({"fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()})
        cifar_pickle(directory / name, entries)
        expected.update({f"x_{name}": x, f"y_{name}": fine})
    (directory / "meta").write_bytes(pickle.dumps({b"fine_label_names": []}))
    return expected


def tar_folder(folder: Path, inner: str, tarball: str) -> Path:
    """Pack folder/inner as folder/tarball (members inner/...) and remove the folder."""
    with tarfile.open(folder / tarball, "w:gz") as tar:
        tar.add(folder / inner, arcname=inner)
    for path in (folder / inner).iterdir():
        path.unlink()
    (folder / inner).rmdir()
    return folder / tarball
