"""Your own images: an .npz of four arrays, or a folder with one subfolder per class.

    python main.py path/to/images.npz conv BrainProp -s
    python main.py path/to/folder conv BrainProp -s

An .npz holds `x_train`, `y_train`, `x_test`, `y_test` (as `np.savez` writes them):
images (N, H, W) (grayscale), (N, H, W, 1) or (N, H, W, 3), channels last, of any size;
labels integers 0 to K-1, every class with at least one training image.  Images are
uint8; other integer types are taken when every value is 0 to 255, and floating-point
images are refused (their scale is ambiguous: save `np.round(x * 255).astype(np.uint8)`
for images in [0, 1]).  Nothing in the file can run code (`allow_pickle=False`).

A folder holds `train/<class>/*.png|jpg|jpeg` and `test/<class>/...`: the classes are
the subfolders of `train/`, numbered in sorted order (recorded in the run summary),
hidden files and folders and files of other types ignored.  The first load decodes
every image (in parallel, with progress) and writes `brainprop-cache.npz` into the
folder; later loads map that cache (read a batch at a time) while it matches the
folder's files (see `brainprop.data.imagecache`).  Images whose three channels are
equal everywhere (a folder of grayscale images) keep one channel.  All images must have
one size, unless an image size (H, W) is given (`--image-size HxW`): then each image is
stretched to it as it is decoded (`brainprop.data.tinyimagenet.resize`), whatever its
aspect ratio, and cached apart (`brainprop-cache-HxW.npz`).

The data set's name, which the run's files, the summary and the report use, is the
file's or folder's name (`images` for `data/images.npz`), made safe for file names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from brainprop.data import tinyimagenet
from brainprop.data.checks import Read, check_labels, reading
from brainprop.data.imagecache import fingerprint, holds_images, load_cache, save_and_map
from brainprop.utils.errors import BrainPropError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_NAME = "brainprop-cache.npz"
LAYOUT = "train/<class>/*.png|jpg|jpeg and test/<class>/..."
# The largest side --image-size takes: beyond it a typo, not a network's input.
MAX_SIDE = 4096
IMAGE_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", re.ASCII)
MIXED_SIZES = "; --image-size HxW (height x width, such as 32x32) resizes every image to one"


def is_path(text: str) -> bool:
    """Whether a dataset argument names a file or folder rather than a declared data set."""
    return "/" in text or os.sep in text or text.endswith(".npz") or Path(text).exists()


def path_name(text: str) -> str:
    """The name of the data set at path `text`: the file's stem or the folder's name,
    with every character other than letters, digits, `.`, `_` and `-` made `-`."""
    path = Path(text)
    stem = (path.stem if path.suffix == ".npz" else Path(os.path.abspath(path)).name)
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip(".-") or "data"


# --- an .npz of four arrays ----------------------------------------------------------------


def read_npz(path: Path) -> Read:
    """The four arrays of an .npz, checked (their classes are counted by `check_classes`)."""
    with reading(path.name):
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise BrainPropError(
                f"{path.name} holds a single array, not the four {', '.join(NPZ_KEYS)}: "
                "write them with np.savez(path, x_train=..., y_train=..., x_test=..., "
                "y_test=...)"
            )
        with loaded as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise BrainPropError(
                    f"{path.name} has no {', '.join(missing)} (it has "
                    f"{', '.join(npz.files) or 'no arrays'}): it needs {', '.join(NPZ_KEYS)}"
                )
            arrays = {key: npz[key] for key in NPZ_KEYS}
    x_train = _images(arrays["x_train"], f"{path.name}: x_train")
    x_test = _images(arrays["x_test"], f"{path.name}: x_test")
    y_train = _labels(arrays["y_train"], len(x_train), f"{path.name}: y_train")
    y_test = _labels(arrays["y_test"], len(x_test), f"{path.name}: y_test")
    return Read((x_train, y_train, x_test, y_test), source=path.name)


def _images(array: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W, 1|3) uint8 images from (N, H, W) or (N, H, W, 1|3) of uint8 or of
    integers 0 to 255; BrainPropError for any other shape or type."""
    expected = "(N, H, W), (N, H, W, 1) or (N, H, W, 3), channels last"
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise BrainPropError(f"{what} has shape {array.shape}, expected {expected}")
    if array.shape[-1] not in (1, 3):
        hint = ("; move the channels last (np.moveaxis(x, 1, -1))"
                if array.shape[1] in (1, 3) else "")
        raise BrainPropError(f"{what} has shape {array.shape}, expected {expected}{hint}")
    if 0 in array.shape[1:3]:
        raise BrainPropError(f"{what} has shape {array.shape}: images of no pixels")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise BrainPropError(
                f"{what} is {array.dtype} with values from {array.min()} to {array.max()}; "
                "images must be 0 to 255 (uint8)"
            )
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        raise BrainPropError(
            f"{what} is {array.dtype}: save the images as uint8 0 to 255 (for images in "
            "[0, 1]: np.round(x * 255).astype(np.uint8)); floats are not rescaled by guess"
        )
    raise BrainPropError(f"{what} has dtype {array.dtype}, expected uint8 images")


def _labels(labels: np.ndarray, n_images: int, what: str) -> np.ndarray:
    """int32 (N,) labels, integers from 0 (how many classes is counted afterwards)."""
    array = np.asarray(labels)
    if array.dtype.kind in "iu" and array.size and array.min() < 0:
        raise BrainPropError(
            f"{what} has negative values (the lowest is {array.min()}); number the classes "
            "0, 1, 2, ..."
        )
    return check_labels(array, n_images, np.iinfo(np.int32).max, what)


def check_classes(y_train: np.ndarray, y_test: np.ndarray, source: str) -> int:
    """The number of classes (the highest label + 1), if every class has a training image
    and there are at least two."""
    n_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    empty = sorted(set(range(n_classes)) - set(np.unique(y_train).tolist()))
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more"
                                                   if len(empty) > 5 else "")
        raise BrainPropError(
            f"{source}: labels run from 0 to {n_classes - 1} but no training image is of "
            f"class {shown}; number the classes 0 to K-1 without gaps"
        )
    if n_classes < 2:
        raise BrainPropError(f"{source}: every label is 0; a classifier needs two classes or more")
    return n_classes


# --- a folder with one subfolder per class ----------------------------------------------


def parse_image_size(text: str) -> tuple[int, int]:
    """(H, W) from `HxW` (`32x48`) or one number (`32`, square); BrainPropError otherwise."""
    match = IMAGE_SIZE.fullmatch(text)
    if match is None:
        raise BrainPropError(
            f"image size {text!r}: give HxW (height x width, such as 32x48) or one number "
            "for a square (such as 32)"
        )
    height = int(match[1])
    width = int(match[2]) if match[2] else height
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BrainPropError(
            f"image size {text!r}: each side must be 1 to {MAX_SIDE} pixels"
        )
    return height, width


def cache_name(image_size: tuple[int, int] | None = None) -> str:
    """The cache file of a folder's images as found (`brainprop-cache.npz`), or resized
    to `image_size` (`brainprop-cache-32x48.npz`, height x width)."""
    if image_size is None:
        return CACHE_NAME
    return f"brainprop-cache-{image_size[0]}x{image_size[1]}.npz"


def read_folder(root: Path, image_size: tuple[int, int] | None = None) -> Read:
    """The images of `root`/train/<class>/ and `root`/test/<class>/, from the cache if it
    matches; classes in sorted order.  With `image_size` (H, W), every image resized to it."""
    classes, train, test = list_folder(root)
    index = {name: label for label, name in enumerate(classes)}
    y_train = np.array([index[cls] for cls, _ in train], np.int32)
    y_test = np.array([index[cls] for cls, _ in test], np.int32)
    paths = [path for _, path in train + test]
    key = cache_key(root, classes, paths, image_size)
    cache = root / cache_name(image_size)
    arrays = load_cache(cache, key)
    if arrays is not None and not holds_images(arrays, y_train, y_test):
        arrays = None
    if arrays is None:
        print(f"Decoding {len(paths)} images of {root} once; they are cached in {cache}")
        images = tinyimagenet.decode_images(paths, remedy="replace or remove that file",
                                            size=image_size, mixed_sizes=MIXED_SIZES)
        if _gray(images):
            images = np.ascontiguousarray(images[..., :1])
        arrays = {"x_train": images[: len(train)], "y_train": y_train,
                  "x_test": images[len(train) :], "y_test": y_test}
        del images
        arrays = save_and_map(cache, key, arrays)
    splits = tuple(arrays[key] for key in NPZ_KEYS)
    return Read(splits, tuple(classes), str(root))


def cache_key(root: Path, classes: list[str], paths: list[Path],
              image_size: tuple[int, int] | None = None) -> str:
    """The fingerprint a folder's cache is kept under: its classes, its images `paths`
    (training, then test; names, sizes, modification times) and how they are decoded."""
    decoded = "" if image_size is None else " resized to {}x{}".format(*image_size)
    return fingerprint(root, paths, extra=f"image folder{decoded}\t" + "\t".join(classes))


def list_folder(root: Path) -> tuple[list[str], list[tuple[str, Path]], list[tuple[str, Path]]]:
    """The classes (sorted subfolders of train/) and each split's (class, image) pairs, in
    the order the images are cached; BrainPropError, in one line, for a folder of another
    layout."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise BrainPropError(
                f"{root} has no {split}/ folder: an image folder holds {LAYOUT} "
                "(one subfolder per class)"
            )
    classes = _subfolders(root / "train")
    if len(classes) < 2:
        raise BrainPropError(
            f"{root}/train has {'only ' + classes[0] if classes else 'no class folders'}: "
            "put each class's images in a subfolder train/<class>/, two classes or more"
        )
    unknown = [name for name in _subfolders(root / "test") if name not in set(classes)]
    if unknown:
        raise BrainPropError(
            f"{root}/test has {', '.join(unknown[:5])}, which train/ has not: the classes of "
            "test/ must be classes of train/"
        )
    train, test = [], []
    for name in classes:
        images = _images_in(root / "train" / name)
        if not images:
            raise BrainPropError(
                f"{root}/train/{name} has no {'/'.join(IMAGE_SUFFIXES)} images: every class "
                "needs training images (or remove the folder)"
            )
        train += [(name, path) for path in images]
        if (root / "test" / name).is_dir():
            test += [(name, path) for path in _images_in(root / "test" / name)]
    if not test:
        raise BrainPropError(f"{root}/test has no {'/'.join(IMAGE_SUFFIXES)} images in "
                             "its class folders")
    return classes, train, test


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _gray(images: np.ndarray) -> bool:
    """Whether the three channels of every image are equal (grayscale files)."""
    return bool(np.array_equal(images[..., 0], images[..., 1])
                and np.array_equal(images[..., 1], images[..., 2]))
