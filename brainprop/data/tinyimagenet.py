"""Tiny ImageNet: the extracted `tiny-imagenet-200/` folder as uint8 arrays.

Training images are `train/<wnid>/images/*.JPEG`, test (validation) images
`val/images/*.JPEG`, labelled by `val/val_annotations.txt` (tab-separated: file, wnid,
then the bounding box).  The classes are the sorted wnids of `train/` (the original took
directory order, which differs between file systems; `ordered_classes` gives that order,
or one read from a file, for weights trained with it); the number of classes, of images
and the image size are read from the data.  Grayscale images become three channels.

The first load decodes every JPEG (in parallel, with progress) and writes
`brainprop-cache.npz` into the folder; later loads map that cache (read a batch at a
time) if it still matches the folder's files (see `brainprop.data.imagecache`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from brainprop.data.checks import Read
from brainprop.data.imagecache import fingerprint, holds_images, load_cache, save_and_map
from brainprop.utils.errors import BrainPropError, one_line

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


def read_tinyimagenet(data_dir: str | os.PathLike | None, class_order: str = "sorted") -> Read:
    """The four arrays, the classes and the folder read, from the cache if it matches.

    The classes are the wnids in output-unit order, chosen by `class_order` (see
    `ordered_classes`); label k is `classes[k]`.  The images and the cache do not depend
    on the order: only the labels are renumbered.
    """
    folder = find_folder(data_dir)
    listing = list_files(folder)
    classes = ordered_classes(folder, listing.classes, class_order)
    sources = [*listing.train, folder / ANNOTATIONS, *listing.test]
    key = fingerprint(folder, sources, extra=" ".join(listing.classes))
    cache = folder / CACHE_NAME
    arrays = load_cache(cache, key)
    if arrays is not None and not holds_images(arrays, listing.y_train, listing.y_test):
        arrays = None
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
        del images
        arrays = save_and_map(cache, key, arrays)
    # Sorted position -> output unit.
    unit = np.array([classes.index(wnid) for wnid in listing.classes], np.int32)
    splits = (arrays["x_train"], unit[arrays["y_train"]], arrays["x_test"], unit[arrays["y_test"]])
    return Read(splits, tuple(classes), str(folder))


def ordered_classes(folder: Path, wnids: list[str], class_order: str) -> list[str]:
    """The wnids of `folder`/train in output-unit order.

    `class_order` is `sorted` (this project's default), `listdir` (the order
    `os.listdir` gives on this machine, which is how the original release numbered
    the classes: it differs between file systems), or the path of a file with one
    wnid per line, line k naming the class of output unit k.
    """
    if class_order == "sorted":
        return sorted(wnids)
    if class_order == "listdir":
        known = set(wnids)
        return [name for name in os.listdir(folder / "train") if name in known]
    return read_class_order(class_order, wnids)


def read_class_order(path: str | os.PathLike, wnids: list[str]) -> list[str]:
    """The wnids listed in the file `path`, one per line; each of `wnids` exactly once."""
    path = Path(path)
    what = f"--class-order {path}"
    if not path.is_file():
        raise BrainPropError(
            f"{what}: no such file; give sorted, listdir or a file of wnids, one per line"
        )
    try:
        listed = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise BrainPropError(f"{what}: cannot read it ({exc})") from exc
    twice = sorted({wnid for wnid in listed if listed.count(wnid) > 1})
    unknown = [wnid for wnid in listed if wnid not in set(wnids)]
    missing = [wnid for wnid in sorted(wnids) if wnid not in set(listed)]
    problems = [
        f"{label} {_few(names)}"
        for label, names in (("lists twice", twice), ("lists wnids not in train/:", unknown),
                             ("lacks", missing))
        if names
    ]
    if problems:
        raise BrainPropError(
            f"{what} {'; '.join(problems)}: it must list each of the {len(wnids)} wnids of "
            "train/ once, one per line (python -m brainprop.classorder writes such a file)"
        )
    return listed


def _few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def list_files(folder: Path) -> Listing:
    """Classes, training and test images with labels; BrainPropError if the layout is off."""
    redo = f"extract {ZIP_NAME} again (python tinyimagenet.py)"
    # Hidden folders are no classes (the original skipped them too).
    classes = sorted(
        p.name for p in (folder / "train").iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise BrainPropError(f"{folder}/train has no class folders; {redo}")
    train, y_train = [], []
    for label, wnid in enumerate(classes):
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise BrainPropError(f"{folder}/train/{wnid}/images has no .JPEG images; {redo}")
        unreadable = next((image for image in images if not image.is_file()), None)
        if unreadable is not None:
            raise BrainPropError(f"{unreadable} is not a file (a broken link, or a folder); "
                                 f"{redo}")
        train += images
        y_train += [label] * len(images)
    test, y_test = _annotated(folder, {wnid: i for i, wnid in enumerate(classes)}, redo)
    return Listing(classes, train, np.array(y_train, np.int32), test, np.array(y_test, np.int32))


def _annotated(folder: Path, index: dict[str, int], redo: str) -> tuple[list[Path], list[int]]:
    """The validation images and labels listed in val_annotations.txt, in its order."""
    path = folder / ANNOTATIONS
    if not path.is_file():
        raise BrainPropError(f"{path} not found; {redo}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise BrainPropError(f"{path} line {line} is not UTF-8 text; {redo}") from None
    images, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise BrainPropError(
                f"{path} line {number}: expected 'file<TAB>wnid<TAB>...' with a wnid of "
                f"train/, got {line[:80]!r}; {redo}"
            )
        name = fields[0]
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise BrainPropError(
                f"{path} line {number}: {name[:80]!r} is not the name of a file in val/images/ "
                f"(no folders or paths); {redo}"
            )
        image = folder / "val" / "images" / name
        if not image.is_file():
            raise BrainPropError(f"{image} (line {number} of {ANNOTATIONS}) not found; {redo}")
        images.append(image)
        labels.append(index[fields[1]])
    if not images:
        raise BrainPropError(f"{path} lists no images; {redo}")
    return images, labels


# What to do about an image that cannot be decoded, unless the caller says otherwise.
REDECODE = f"extract {ZIP_NAME} again"


def decode_images(paths: list[Path], remedy: str = REDECODE,
                  size: tuple[int, int] | None = None, mixed_sizes: str = "") -> np.ndarray:
    """All `paths` as one uint8 array (N, H, W, 3).

    With `size` (H, W) every image is resized to it (`resize`); without, H and W are the
    first image's, and an image of another size ends it in one line that adds `mixed_sizes`
    (what to do about it).  Large sets are decoded by worker processes (Pillow holds the
    GIL, so threads would not help), a chunk at a time, with a progress bar.  An image
    that cannot be decoded ends it in one line that says `remedy`.
    """
    resize = size is not None
    if size is None:
        size = _decode(paths[0], remedy).shape[:2]
    decoding = Decoding((int(size[0]), int(size[1])), resize, remedy, mixed_sizes)
    images = np.empty((len(paths), *decoding.size, 3), np.uint8)
    starts = range(0, len(paths), CHUNK)
    # A bar on a terminal; nothing in a log file, where redraws would pile up.
    with tqdm(total=len(paths), unit="image", desc="Decoding", disable=None) as progress:
        _decode_into(images, paths, starts, progress, decoding)
    return images


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How a chunk of images is decoded: to `size` (H, W), resized to it or refused when
    of another size; `remedy` and `mixed_sizes` end the one-line errors."""

    size: tuple[int, int]
    resize: bool = False
    remedy: str = REDECODE
    mixed_sizes: str = ""


def _decode_into(images: np.ndarray, paths: list[Path], starts: range, progress,
                 decoding: Decoding) -> None:
    workers = _workers()
    if len(paths) < POOL_MIN or workers < 2:
        for start in starts:
            images[start : start + CHUNK] = decode_chunk(paths[start : start + CHUNK], decoding)
            progress.update(min(CHUNK, len(paths) - start))
        return
    # spawn: forking a process that already runs a backend's threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        tasks = {pool.submit(decode_chunk, paths[start : start + CHUNK], decoding): start
                 for start in starts}
        try:
            for task in as_completed(tasks):
                chunk = task.result()
                images[tasks[task] : tasks[task] + len(chunk)] = chunk
                progress.update(len(chunk))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad image: do not decode the rest
            raise


def decode_chunk(paths: list[Path], decoding: Decoding) -> np.ndarray:
    """`paths` decoded as uint8 (N, H, W, 3) of `decoding.size`."""
    height, width = decoding.size
    chunk = np.empty((len(paths), height, width, 3), np.uint8)
    for i, path in enumerate(paths):
        image = _decode(path, decoding.remedy, decoding.size if decoding.resize else None)
        if image.shape[:2] != decoding.size:
            raise BrainPropError(
                f"{path} is {image.shape[1]}x{image.shape[0]} pixels, the others "
                f"{width}x{height} (width x height); all images must have one size"
                f"{decoding.mixed_sizes}"
            )
        chunk[i] = image
    return chunk


def _decode(path: Path, remedy: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image at `path` as uint8 (H, W, 3); with `size` (H, W), resized to it."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # grayscale (mode L) -> 3 channels
            if size is not None and image.size != (size[1], size[0]):
                image = resize(image, size)
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BrainPropError(
            f"cannot decode {path} ({type(exc).__name__}: {one_line(exc)}); {remedy}"
        ) from exc


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` stretched to `size` (H, W), whatever its aspect ratio: nothing is cropped.

    Pillow's bilinear filter; shrinking, it averages over every source pixel a target
    pixel covers, so small images of large photos do not alias.
    """
    return image.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def _workers() -> int:
    try:
        return min(len(os.sched_getaffinity(0)), 16)
    except AttributeError:  # not on Linux
        return min(os.cpu_count() or 1, 16)
