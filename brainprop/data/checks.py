"""What every reader of a data set returns, and the checks they all make on what they read.

A reader returns a `Read`: the four arrays (`Splits`), the name of each class where the
data name them, and what its errors name.  `check_images` and `check_labels` refuse
arrays of the wrong shape, dtype or label range in one line that names the file;
`reading` turns any other failure to read a file (truncated, corrupt) into one such line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from brainprop.utils.errors import BrainPropError, one_line

# (x_train, y_train, x_test, y_test), images (N, H, W, C) uint8.
Splits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Read(NamedTuple):
    """What a reader found: the four arrays, and the name of each class in label order
    where the data name their classes (None where they only number them)."""

    splits: Splits
    classes: tuple[str, ...] | None = None
    source: str | None = None  # what errors name: the folder read, where not the one given


def check_images(images: object, shape: tuple, what: str) -> np.ndarray:
    """`images` if it is a uint8 array whose shape matches `shape` (None: any size)."""
    expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    if not isinstance(images, np.ndarray):
        kind = type(images).__name__
        raise BrainPropError(f"{what} is a {kind}, expected a uint8 array {expected}")
    if images.ndim != len(shape) or any(s not in (None, n) for s, n in zip(shape, images.shape, strict=True)):
        raise BrainPropError(f"{what} has shape {images.shape}, expected {expected}")
    if images.dtype != np.uint8:
        raise BrainPropError(f"{what} has dtype {images.dtype}, expected uint8")
    return images


def check_labels(labels: object, n_images: int, n_classes: int, what: str) -> np.ndarray:
    """`labels` as int32 (N,) if they are integers in [0, n_classes), one per image."""
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise BrainPropError(f"{what} is not an array of integers ({one_line(exc)})") from exc
    if array.ndim == 2 and array.shape[1:] == (1,):
        array = array[:, 0]
    if array.size == 0:
        array = array.astype(np.int32)
    if array.ndim != 1:
        raise BrainPropError(f"{what} has shape {array.shape}, expected (N,)")
    if array.dtype.kind not in "iu":
        raise BrainPropError(f"{what} has dtype {array.dtype}, expected integers")
    if len(array) != n_images:
        raise BrainPropError(f"{what} has {len(array)} labels for {n_images} images")
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise BrainPropError(
            f"{what} has values from {array.min()} to {array.max()}, expected 0 to {n_classes - 1}"
        )
    return array.astype(np.int32)


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Turn any failure to read file `name` (other than our own checks) into one line."""
    try:
        yield
    except BrainPropError:
        raise
    except Exception as exc:
        raise BrainPropError(
            f"{name}: cannot read it ({type(exc).__name__}: {one_line(exc)}); "
            "if it is truncated or corrupt, get it again"
        ) from exc
