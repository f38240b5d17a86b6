"""Tiny ImageNet: the extracted `tiny-imagenet-200/` folder as uint8 arrays.

Training images are `train/<wnid>/images/*.JPEG`, test (validation) images
`val/images/*.JPEG`, labelled by `val/val_annotations.txt` (tab-separated: file, wnid,
then the bounding box).  The classes are the sorted wnids of `train/` (the original took
directory order, which differs between file systems); the number of classes, of images
and the image size are read from the data.  Grayscale images become three channels.

The first load decodes every JPEG (in parallel, with progress) and writes
`brainprop-cache.npz` into the folder; later loads read that cache if it still matches
the folder's files (see `brainprop.imagecache`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image

from brainprop.errors import BrainPropError
from brainprop.imagecache import fingerprint, load_cache, save_cache

FOLDER = "tiny-imagenet-200"
ZIP_NAME = "tiny-imagenet-200.zip"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
CACHE_NAME = "brainprop-cache.npz"
ANNOTATIONS = "val/val_annotations.txt"

# Images per task sent to a worker process, and the fewest images worth starting workers for.
CHUNK = 1000
POOL_MIN = 4000


@dataclasses.dataclass(frozen=True)
class Listing:
    """The files of an extracted folder, in load order, and their labels."""

    classes: list[str]
    train: list[Path]
    y_train: np.ndarray
    test: list[Path]
    y_test: np.ndarray


def find_folder(data_dir: str | os.PathLike | None) -> Path:
    """`tiny-imagenet-200/` in `data_dir` (or the current directory), or `data_dir` itself."""
    base = Path.cwd() if data_dir is None else Path(data_dir)
    for folder in (base / FOLDER, base):
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return folder
    hint = ""
    if (base / ZIP_NAME).is_file():
        hint = f"; {ZIP_NAME} is there but not extracted"
    raise BrainPropError(
        f"{FOLDER}/ not found in {base}{hint}: run `python tinyimagenet.py` next to "
        f"{ZIP_NAME} (from {URL}), then run from that folder or pass --data-dir FOLDER"
    )


def read_tinyimagenet(data_dir: str | os.PathLike | None) -> tuple[tuple, int, str]:
    """((x_train, y_train, x_test, y_test), n_classes, folder), from the cache if it matches."""
    folder = find_folder(data_dir)
    listing = list_files(folder)
    sources = [*listing.train, folder / ANNOTATIONS, *listing.test]
    key = fingerprint(folder, sources, extra=" ".join(listing.classes))
    cache = folder / CACHE_NAME
    arrays = load_cache(cache, key)
    if arrays is None:
        total = len(listing.train) + len(listing.test)
        print(f"Decoding {total} Tiny ImageNet images once; they are cached in {cache}")
        images = decode_images([*listing.train, *listing.test])
        arrays = {
            "x_train": images[: len(listing.train)],
            "y_train": listing.y_train,
            "x_test": images[len(listing.train) :],
            "y_test": listing.y_test,
        }
        save_cache(cache, key, arrays)
    splits = tuple(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    return splits, len(listing.classes), str(folder)


def list_files(folder: Path) -> Listing:
    """Classes, training and test images with labels; BrainPropError if the layout is off."""
    redo = f"extract {ZIP_NAME} again (python tinyimagenet.py)"
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    if not classes:
        raise BrainPropError(f"{folder}/train has no class folders; {redo}")
    train, y_train = [], []
    for label, wnid in enumerate(classes):
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise BrainPropError(f"{folder}/train/{wnid}/images has no .JPEG images; {redo}")
        train += images
        y_train += [label] * len(images)
    test, y_test = _annotated(folder, {wnid: i for i, wnid in enumerate(classes)}, redo)
    return Listing(classes, train, np.array(y_train, np.int32), test, np.array(y_test, np.int32))


def _annotated(folder: Path, index: dict[str, int], redo: str) -> tuple[list[Path], list[int]]:
    """The validation images and labels listed in val_annotations.txt, in its order."""
    path = folder / ANNOTATIONS
    if not path.is_file():
        raise BrainPropError(f"{path} not found; {redo}")
    images, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise BrainPropError(
                f"{path} line {number}: expected 'file<TAB>wnid<TAB>...' with a wnid of "
                f"train/, got {line[:80]!r}; {redo}"
            )
        image = folder / "val" / "images" / fields[0]
        if not image.is_file():
            raise BrainPropError(f"{image} (line {number} of {ANNOTATIONS}) not found; {redo}")
        images.append(image)
        labels.append(index[fields[1]])
    if not images:
        raise BrainPropError(f"{path} lists no images; {redo}")
    return images, labels


def decode_images(paths: list[Path]) -> np.ndarray:
    """All `paths` as one uint8 array (N, H, W, 3), H and W from the first image.

    Large sets are decoded by worker processes (Pillow holds the GIL, so threads would
    not help), a chunk at a time, with a progress bar.
    """
    height, width = _decode(paths[0]).shape[:2]
    images = np.empty((len(paths), height, width, 3), np.uint8)
    starts = range(0, len(paths), CHUNK)
    import keras  # only for the progress bar

    progress = keras.utils.Progbar(len(paths), unit_name="image")
    workers = _workers()
    if len(paths) < POOL_MIN or workers < 2:
        for start in starts:
            images[start : start + CHUNK] = decode_chunk(paths[start : start + CHUNK], (height, width))
            progress.update(min(start + CHUNK, len(paths)))
        return images
    # spawn: forking a process that already runs a backend's threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        tasks = {
            pool.submit(decode_chunk, paths[start : start + CHUNK], (height, width)): start
            for start in starts
        }
        done = 0
        try:
            for task in as_completed(tasks):
                chunk = task.result()
                images[tasks[task] : tasks[task] + len(chunk)] = chunk
                done += len(chunk)
                progress.update(done)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad image: do not decode the rest
            raise
    return images


def decode_chunk(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """`paths` decoded as uint8 (N, H, W, 3); every image must be `size` (H, W)."""
    chunk = np.empty((len(paths), *size, 3), np.uint8)
    for i, path in enumerate(paths):
        image = _decode(path)
        if image.shape[:2] != size:
            raise BrainPropError(
                f"{path} is {image.shape[1]}x{image.shape[0]} pixels, the others "
                f"{size[1]}x{size[0]}; all images must have one size"
            )
        chunk[i] = image
    return chunk


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))  # grayscale (mode L) -> 3 channels
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BrainPropError(
            f"cannot decode {path} ({type(exc).__name__}: {exc}); extract {ZIP_NAME} again"
        ) from exc


def _workers() -> int:
    try:
        return min(len(os.sched_getaffinity(0)), 16)
    except AttributeError:  # not on Linux
        return min(os.cpu_count() or 1, 16)
