"""A cache of decoded images: one uncompressed .npz, trusted only if it matches its source.

Decoding a folder of JPEGs takes a while; opening the cache takes seconds: its arrays
are memory-mapped (`brainprop.data.mapped`), so a cache larger than memory trains a
batch at a time.  The cache records a format version and a fingerprint of the source
files (their names, sizes and modification times, and how they were decoded), and
`load_cache` returns None for any cache whose version or fingerprint differs, or that
cannot be read, is cut short or fails its checksums: the caller decodes again and
rewrites it.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from brainprop.data.mapped import load_mapped
from brainprop.utils.atomic import write_atomically

# Bump when what the cache holds, or how it is laid out, changes.
CACHE_VERSION = 1


def fingerprint(root: Path, files: Iterable[Path], extra: str = "") -> str:
    """A hash of each file's path relative to `root`, size and mtime, in order, and `extra`."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n{extra}\n".encode())
    for path in files:
        stat = path.stat()
        line = f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
        digest.update(line.encode())
    return digest.hexdigest()


def load_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved in `path` under `key`, memory-mapped read-only, or None if it is
    absent, stale or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            # Members are read lazily: a stale cache costs only these two small reads.
            if int(npz["version"]) != CACHE_VERSION or str(npz["fingerprint"]) != key:
                return None
        arrays = load_mapped(path, in_memory=("version", "fingerprint"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return {name: array for name, array in arrays.items() if name not in ("version", "fingerprint")}


def holds_images(arrays: dict[str, np.ndarray], y_train: np.ndarray, y_test: np.ndarray) -> bool:
    """Whether cached `arrays` are the images of a listing with these labels: uint8
    (N, H, W, 1 or 3) `x_train` and `x_test` of one image size, one image per label,
    and `y_train`, `y_test` those labels.  A cache written by something else under the
    right fingerprint is then decoded again rather than trusted."""
    for split, labels in (("train", y_train), ("test", y_test)):
        images, cached = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8
                and images.ndim == 4 and len(images) == len(labels) and images.shape[3] in (1, 3)
                and isinstance(cached, np.ndarray) and np.array_equal(cached, labels)):
            return False
    return arrays["x_train"].shape[1:] == arrays["x_test"].shape[1:]


def save_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> bool:
    """Write `arrays` to `path` under `key` atomically; warn and return False if it cannot."""
    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            np.savez(f, version=np.int64(CACHE_VERSION), fingerprint=np.str_(key), **arrays)

    try:
        write_atomically(path, write)
    except OSError as exc:
        print(f"warning: could not write the cache {path} ({exc}); the next run decodes again",
              file=sys.stderr)
        return False
    return True


def save_and_map(path: Path, key: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write `arrays` to the cache `path` under `key`, and return them memory-mapped from
    it, so that training reads the cache as a later run would (and the decoded copies can
    be freed); `arrays` as given if the cache cannot be written or read back."""
    if not save_cache(path, key, arrays):
        return arrays
    return load_cache(path, key) or arrays
