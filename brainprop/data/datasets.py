"""The data sets, each declared once: MNIST, CIFAR10, CIFAR100, Tiny ImageNet,
FashionMNIST, and your own images (an .npz or an image folder) as uint8 arrays.

Each data set is one `DatasetSpec`, declared at the end of this module with
`register_dataset`: its name, its number of classes (or that the data name them), how it
is downloaded, which files it reads offline and the networks the paper trained on it.
The command line's choices, the `--data-dir` help and the paper's combinations (and the
rows of the paper's tables, `brainprop.tables.paper`) are read from those declarations.

A dataset argument is resolved once, by `dataset_spec`: a declared name, or the path of
an .npz or image folder (`brainprop.data.own`), which gets a DatasetSpec of its own.
`load_dataset` reads the data set of a DatasetSpec: from `keras.datasets` without a
data folder, or from the standard files in `--data-dir` (`brainprop.data.standard`);
Tiny ImageNet is never downloaded, but read from the extracted `tiny-imagenet-200/` in
`--data-dir` or the current directory (`brainprop.data.tinyimagenet`).

Images stay uint8 (channels last), in memory or memory-mapped from a cache of decoded
images (`brainprop.data.mapped`); `brainprop.data.pipeline.ImageBatches` scales one batch
at a time to float32 in [0, 1], so no float copy of a whole split is ever made.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from brainprop.data import own, standard
from brainprop.data.checks import Read, Splits, check_images, check_labels
from brainprop.data.tinyimagenet import read_tinyimagenet
from brainprop.utils.errors import BrainPropError, one_line


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A data set, declared once: everything else (the command line's choices, the
    `--data-dir` help, the messages, the paper's combinations) is read from here.

    `read(folder, class_order)` reads the files named by `files` in `folder`;
    `class_order` is None unless the data set `orders_classes` (takes --class-order).
    `download` fetches the four arrays (from `keras.datasets`); without it, the data
    set is read from `--data-dir`, or from the current directory without one.
    `n_classes` None: one class per name the reader returns or, where it names none,
    the highest label + 1 (`brainprop.data.own.check_classes`).  `paper_architectures`
    names the networks the paper trained on it (none: a data set beyond the paper, which
    takes every network its images fit).  A path given as the dataset has a DatasetSpec
    of its own, made by `dataset_spec` and never registered: its `path` is the path as
    given (None for a declared data set).  `read_resized(folder, (H, W))`, where there is
    one, reads the data with every image resized to (H, W) as it is decoded (an image
    folder; `--image-size`); the other data sets take no image size.
    """

    name: str
    files: str
    read: Callable[[Path, str | None], Read]
    n_classes: int | None = None
    download: Callable[[], Splits] | None = None
    paper_architectures: tuple[str, ...] = ()
    orders_classes: bool = False
    path: str | None = None
    read_resized: Callable[[Path, tuple[int, int]], Read] | None = None

    @property
    def declared(self) -> bool:
        """Whether this is a declared data set, rather than the data at a path."""
        return self.path is None


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Declare `spec` (under its name): from now on it is a choice of the command line."""
    if spec.name in DATASETS:
        raise ValueError(f"a data set named {spec.name!r} is already declared")
    DATASETS[spec.name] = spec
    return spec


def paper_combinations() -> dict[str, tuple[str, ...]]:
    """Data set -> the networks the paper trained on it, for the data sets of the paper."""
    return {name: spec.paper_architectures for name, spec in DATASETS.items()
            if spec.paper_architectures}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A data set's training and test splits, as loaded into memory, and the split
    that training validates on.

    Images are uint8 with shape (N, H, W, C) (channels last): in memory, memory-mapped
    from a cache of decoded images, or rows of such a map (`brainprop.data.mapped.Rows`,
    after a validation split), read a batch at a time; labels are int32 with shape (N,)
    and values in [0, n_classes).  Without a validation split (`x_val` and
    `y_val` None) training validates on the test set, as the paper did.  `eq=False`: two
    data sets compare (and hash) by identity, since comparing NumPy arrays field by
    field is ambiguous.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    # The name of each class in label (output-unit) order, where the data name them.
    classes: tuple[str, ...] | None = None

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels that early stopping and the best epoch look at."""
        if self.x_val is None or self.y_val is None:
            return self.x_test, self.y_test
        return self.x_val, self.y_val

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape (H, W, C) of one image."""
        height, width, channels = self.x_train.shape[1:]
        return (int(height), int(width), int(channels))


# --- a dataset argument, resolved once -------------------------------------------------------


def dataset_spec(text: str) -> DatasetSpec:
    """The declaration of dataset argument `text`: a declared data set, or else the .npz
    or image folder at path `text` (see `brainprop.data.own`).  BrainPropError for
    anything else."""
    if text in DATASETS:
        return DATASETS[text]
    if own.is_path(text):
        return _own_dataset(text)
    raise BrainPropError(
        f"unknown dataset {text!r}; known datasets: {', '.join(DATASETS)}, or the path of "
        "an .npz or of an image folder"
    )


def _own_dataset(text: str) -> DatasetSpec:
    """The declaration of the .npz file or the image folder at path `text`."""
    path = Path(text)
    if path.is_dir():
        return DatasetSpec(_path_name(text), own.LAYOUT, lambda folder, order: own.read_folder(path),
                           path=text, read_resized=lambda folder, size: own.read_folder(path, size))
    if path.is_file():
        if path.suffix != ".npz":
            raise BrainPropError(
                f"{text} is a file but not an .npz: give an .npz of {', '.join(own.NPZ_KEYS)} "
                f"or a folder of {own.LAYOUT}"
            )
        return DatasetSpec(_path_name(text), ", ".join(own.NPZ_KEYS),
                           lambda folder, order: own.read_npz(path), path=text)
    raise BrainPropError(
        f"{text}: no such file or folder; give a declared data set ({', '.join(DATASETS)}), "
        "an .npz or an image folder"
    )


def _path_name(text: str) -> str:
    """The name of the data set at path `text` (`brainprop.data.own.path_name`).

    BrainPropError if that is the name of a declared data set (`mnist.npz`): the run's
    files and the report would take it for that data set.
    """
    name = own.path_name(text)
    taken = {declared.lower(): declared for declared in DATASETS}
    if name.lower() in taken:
        raise BrainPropError(
            f"{text} would be called {name}, the name of the declared data set "
            f"{taken[name.lower()]}: rename the file or folder (or run {taken[name.lower()]} "
            "by its name)"
        )
    return name


def dataset_name(text: str) -> str:
    """What the runs of dataset argument `text` are called: the declared name, or the
    name of the file or folder it is the path of."""
    return dataset_spec(text).name


def check_data_options(
    spec: DatasetSpec, data_dir: str | os.PathLike | None, class_order: str | None,
    image_size: tuple[int, int] | None = None,
) -> None:
    """BrainPropError for a `--data-dir` with the data at a path, or a `--class-order` or
    an `--image-size` for a data set that does not take one."""
    given = spec.name if spec.declared else spec.path
    if not spec.declared and data_dir is not None:
        raise BrainPropError(
            f"--data-dir is where a declared data set's files are; {given} is a path "
            "already: drop --data-dir"
        )
    if class_order is not None and not spec.orders_classes:
        ordering = [name for name, declared in DATASETS.items() if declared.orders_classes]
        raise BrainPropError(
            f"--class-order numbers the classes of {' and '.join(ordering)} only; "
            f"drop it for {given}"
        )
    if image_size is not None and spec.read_resized is None:
        what = "an .npz's arrays are used as they are" if spec.path else f"{given} is not one"
        raise BrainPropError(
            f"--image-size resizes the images of an image folder as they are decoded; {what}: "
            "drop --image-size"
        )


# --- reading a data set ---------------------------------------------------------------------


def load_dataset(
    spec: DatasetSpec, data_dir: str | os.PathLike | None = None, class_order: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Load the data set `spec` (see `dataset_spec`) from `keras.datasets`, or from its
    files in `data_dir`.

    A data set that is never downloaded (TinyImageNet) is read from `data_dir` or,
    without one, from the current directory (where the original looked).
    `class_order` numbers the classes of a data set that names them and takes it
    (TinyImageNet: `sorted`, the default, `listdir` or a file: see
    `brainprop.data.tinyimagenet`), and the Dataset's `classes` are their names in that
    order.  `image_size` (H, W) resizes every image of an image folder to it as it is
    decoded (`brainprop.data.own`); other data sets refuse it.

    Raises BrainPropError (a one-line message saying what to do) for options the data
    set does not take (`check_data_options`), a failed download, a missing file, or a
    file that is corrupt or holds arrays of the wrong shape, dtype or label range.
    """
    check_data_options(spec, data_dir, class_order, image_size)
    if spec.orders_classes:
        class_order = class_order or "sorted"
    read, source = _read(spec, data_dir, class_order, image_size)
    n_classes = spec.n_classes if spec.n_classes is not None else (
        len(read.classes) if read.classes is not None else None)
    if n_classes is None:  # an .npz: counted from the labels
        n_classes = own.check_classes(read.splits[1], read.splits[3], source)
    data = build_dataset(spec.name, read.splits, n_classes=n_classes, source=source)
    return dataclasses.replace(data, classes=read.classes)


def _read(
    spec: DatasetSpec, data_dir: str | os.PathLike | None, class_order: str | None,
    image_size: tuple[int, int] | None,
) -> tuple[Read, str]:
    """What `spec`'s download or reader gives, and what errors about it name."""
    if data_dir is None and spec.download is not None:
        return Read(_download(spec)), f"keras.datasets ({spec.name})"
    folder = Path.cwd() if data_dir is None else Path(data_dir)
    if spec.download is not None and not folder.is_dir():
        raise BrainPropError(
            f"--data-dir {folder} is not a folder; pass the folder that holds {spec.files}"
        )
    if image_size is not None:
        read = spec.read_resized(folder, image_size)
    else:
        read = spec.read(folder, class_order)
    return read, read.source or str(folder)


def _download(spec: DatasetSpec) -> Splits:
    """`spec`'s arrays from keras.datasets; BrainPropError telling what to do if that fails."""
    try:
        return spec.download()
    except Exception as exc:
        raise BrainPropError(
            f"could not download {spec.name} (no internet? {type(exc).__name__}: "
            f"{one_line(exc)}): put {spec.files} in a folder and pass --data-dir FOLDER"
        ) from exc


def build_dataset(name: str, splits: Splits, n_classes: int, source: str) -> Dataset:
    """Check the four arrays `splits` (`source` names them in errors) and make a Dataset.

    Images must be uint8 (N, H, W, C), both splits with the same image shape and at
    least one image; labels integers in [0, n_classes), one per image.
    """
    x_train, y_train, x_test, y_test = splits
    for split, images in (("training", x_train), ("test", x_test)):
        check_images(images, (None, None, None, None), f"{source}: {split} images")
        if len(images) == 0:
            raise BrainPropError(f"{source}: the {split} split has no images")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise BrainPropError(
            f"{source}: training images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; both splits must have the same image shape"
        )
    y_train = check_labels(y_train, len(x_train), n_classes, f"{source}: training labels")
    y_test = check_labels(y_test, len(x_test), n_classes, f"{source}: test labels")
    return Dataset(name, x_train, y_train, x_test, y_test, n_classes)


# --- the declarations -------------------------------------------------------------------


def _fixed(read: Callable[[Path], Splits]) -> Callable[[Path, str | None], Read]:
    """A reader of a data set that numbers its classes without naming them."""
    return lambda folder, class_order: Read(read(folder))


register_dataset(DatasetSpec(
    "MNIST", standard.MNIST.files, _fixed(standard.MNIST.read), n_classes=10,
    download=standard.download_mnist, paper_architectures=("dense", "loccon", "conv"),
))
register_dataset(DatasetSpec(
    "CIFAR10", standard.CIFAR10.files, _fixed(standard.CIFAR10.read), n_classes=10,
    download=functools.partial(standard.download_cifar, "cifar10"),
    paper_architectures=("loccon", "conv", "deep"),
))
register_dataset(DatasetSpec(
    "CIFAR100", standard.CIFAR100.files, _fixed(standard.CIFAR100.read), n_classes=100,
    download=functools.partial(standard.download_cifar, "cifar100", label_mode="fine"),
    paper_architectures=("loccon", "conv", "deep"),
))
# Never downloaded: read from --data-dir or the current directory, classes counted.
register_dataset(DatasetSpec(
    "TinyImageNet", "tiny-imagenet-200/", read_tinyimagenet,
    paper_architectures=("deep",), orders_classes=True,
))
# Beyond the paper: every network its 28x28 images allow.
register_dataset(DatasetSpec(
    "FashionMNIST", standard.FASHION_MNIST.files, _fixed(standard.FASHION_MNIST.read),
    n_classes=10, download=functools.partial(standard.download_mnist, "fashion_mnist"),
))
