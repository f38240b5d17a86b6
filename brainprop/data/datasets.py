"""The data sets: MNIST, CIFAR10, CIFAR100, Tiny ImageNet, FashionMNIST and your own
images (an .npz or an image folder, see `brainprop.data.own`) as uint8 arrays.

Each data set is one `DatasetSpec`, declared at the end of this module with
`register_dataset`: its name, its number of classes (or that the data name them), how it
is downloaded, which files it reads offline and the networks the paper trained on it.
The command line's choices, the `--data-dir` help and the paper's combinations are read
from those declarations.

Without a data folder the data come from `keras.datasets` (downloaded once, then cached
by Keras).  Offline, `--data-dir` points at the standard files instead: `mnist.npz` or
the four idx files of the MNIST distribution (`train-images-idx3-ubyte` and the others,
gzipped or not), `cifar-10-batches-py/` or `cifar-10-python.tar.gz`, `cifar-100-python/`
or `cifar-100-python.tar.gz`, `fashion-mnist.npz` or MNIST's four idx files in a
`fashion-mnist/` subfolder.  The number of images per file is read from the files.

Images stay uint8 (channels last) in memory; `brainprop.data.pipeline.ImageBatches` scales
one batch at a time to float32 in [0, 1], so no float copy of a whole split is ever made.
Reading local files needs no Keras backend, so a missing file is reported at once.

Tiny ImageNet is never downloaded: it is read from the extracted `tiny-imagenet-200/`
in `--data-dir` or the current directory (see `brainprop.data.tinyimagenet`).

The CIFAR files are Python pickles; they are read by `brainprop.utils.safepickle`, which
admits only the arrays, dicts, lists and strings such a file holds and refuses any other
pickle (which could run code when loaded) in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from brainprop.utils import safepickle
from brainprop.utils.errors import BrainPropError, one_line

# (x_train, y_train, x_test, y_test), images (N, H, W, C) uint8.
Splits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Read(NamedTuple):
    """What a reader found: the four arrays, and the name of each class in label order
    where the data name their classes (None where they only number them)."""

    splits: Splits
    classes: tuple[str, ...] | None = None
    source: str | None = None  # what errors name: the folder read, where not the one given


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
    of its own, made by `dataset_spec` and never registered.
    """

    name: str
    files: str
    read: Callable[[Path, str | None], Read]
    n_classes: int | None = None
    download: Callable[[], Splits] | None = None
    paper_architectures: tuple[str, ...] = ()
    orders_classes: bool = False

    @property
    def declared(self) -> bool:
        """Whether this is a declared data set (not the spec of a path)."""
        return DATASETS.get(self.name) is self


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

    Images are uint8 with shape (N, H, W, C) (channels last); labels are int32 with
    shape (N,) and values in [0, n_classes).  Without a validation split (`x_val` and
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


def load_dataset(
    spec: DatasetSpec | str, data_dir: str | os.PathLike | None = None,
    class_order: str | None = None,
) -> Dataset:
    """Load the data set `spec` (a declaration, or a name or path `dataset_spec` resolves)
    from `keras.datasets`, or from its files in `data_dir`.

    A data set that is never downloaded (TinyImageNet) is read from `data_dir` or,
    without one, from the current directory (where the original looked).
    `class_order` numbers the classes of a data set that names them and takes it
    (TinyImageNet: `sorted`, the default, `listdir` or a file: see
    `brainprop.data.tinyimagenet`), and the Dataset's `classes` are their names in that
    order.

    Raises BrainPropError (a one-line message saying what to do) for an unknown name,
    a failed download, a missing file, or a file that is corrupt or holds arrays of the
    wrong shape, dtype or label range.
    """
    if isinstance(spec, str):
        spec = dataset_spec(spec)
    check_data_options(spec, data_dir, class_order)
    name = spec.name
    if spec.orders_classes:
        class_order = class_order or "sorted"
    if data_dir is None and spec.download is not None:
        splits, source = _download(spec), f"keras.datasets ({name})"
        read = Read(splits)
    else:
        folder = Path.cwd() if data_dir is None else Path(data_dir)
        if spec.download is not None and not folder.is_dir():
            raise BrainPropError(
                f"--data-dir {folder} is not a folder; pass the folder that holds {spec.files}"
            )
        read = spec.read(folder, class_order)
        source = read.source or str(folder)
    n_classes = spec.n_classes if spec.n_classes is not None else (
        len(read.classes) if read.classes is not None else None)
    if n_classes is None:  # an .npz: counted from the labels
        from brainprop.data.own import check_classes

        n_classes = check_classes(read.splits[1], read.splits[3], source)
    data = build_dataset(spec.name, *read.splits, n_classes=n_classes, source=source)
    return dataclasses.replace(data, classes=read.classes)


def check_data_options(spec: DatasetSpec, data_dir: str | os.PathLike | None,
                       class_order: str | None) -> None:
    """BrainPropError, in one line, for `--data-dir` with a path, or `--class-order` for a
    data set that does not number its classes."""
    if not spec.declared and data_dir is not None:
        raise BrainPropError(
            f"--data-dir is where a declared data set's files are; {spec.name} is a path "
            "already: drop --data-dir"
        )
    if class_order is not None and not spec.orders_classes:
        ordering = [n for n, s in DATASETS.items() if s.orders_classes]
        raise BrainPropError(
            f"--class-order numbers the classes of {' and '.join(ordering)} only; "
            f"drop it for {spec.name}"
        )


def dataset_spec(name: str) -> DatasetSpec:
    """The declaration of `name`: a declared data set, or else the .npz or image folder
    at path `name` (see `brainprop.data.own`).  BrainPropError for anything else."""
    if name in DATASETS:
        return DATASETS[name]
    from brainprop.data.own import is_path, own_dataset

    if is_path(name):
        return own_dataset(name)
    raise BrainPropError(
        f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, or the path of "
        "an .npz or of an image folder"
    )


def dataset_name(name: str) -> str:
    """What the runs of dataset argument `name` are called: the declared name, or the
    name of the file or folder it is the path of."""
    if name in DATASETS:
        return name
    from brainprop.data.own import path_name

    return path_name(name)


def build_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    source: str,
) -> Dataset:
    """Check the four arrays (`source` names them in errors) and make a Dataset.

    Images must be uint8 (N, H, W, C), both splits with the same image shape and at
    least one image; labels integers in [0, n_classes), one per image.
    """
    for split, images in (("training", x_train), ("test", x_test)):
        _check_images(images, (None, None, None, None), f"{source}: {split} images")
        if len(images) == 0:
            raise BrainPropError(f"{source}: the {split} split has no images")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise BrainPropError(
            f"{source}: training images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; both splits must have the same image shape"
        )
    y_train = _check_labels(y_train, len(x_train), n_classes, f"{source}: training labels")
    y_test = _check_labels(y_test, len(x_test), n_classes, f"{source}: test labels")
    return Dataset(name, x_train, y_train, x_test, y_test, n_classes)


# --- checks shared by all readers -------------------------------------------------------


def _check_images(images: object, shape: tuple, what: str) -> np.ndarray:
    """`images` if it is a uint8 array whose shape matches `shape` (None: any size)."""
    expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    if not isinstance(images, np.ndarray):
        kind = type(images).__name__
        raise BrainPropError(f"{what} is a {kind}, expected a uint8 array {expected}")
    if images.ndim != len(shape) or any(s not in (None, n) for s, n in zip(shape, images.shape)):
        raise BrainPropError(f"{what} has shape {images.shape}, expected {expected}")
    if images.dtype != np.uint8:
        raise BrainPropError(f"{what} has dtype {images.dtype}, expected uint8")
    return images


def _check_labels(labels: object, n_images: int, n_classes: int, what: str) -> np.ndarray:
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
def _reading(name: str) -> Iterator[None]:
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


# --- keras.datasets -----------------------------------------------------------------------


def _download_mnist(module: str = "mnist") -> Splits:
    from brainprop.utils.backend import start  # only for downloads: local files need no backend

    keras = start()

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, module).load_data()
    return x_train[..., None], y_train, x_test[..., None], y_test


def _download_cifar(module: str, **kwargs) -> Splits:
    from brainprop.utils.backend import start

    keras = start()

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, module).load_data(**kwargs)
    if keras.config.image_data_format() == "channels_first":  # Keras gave (N, 3, 32, 32)
        x_train, x_test = (np.ascontiguousarray(x.transpose(0, 2, 3, 1)) for x in (x_train, x_test))
    return x_train, y_train, x_test, y_test


def _download(spec: DatasetSpec) -> Splits:
    """`spec`'s arrays from keras.datasets; BrainPropError telling what to do if that fails."""
    try:
        return spec.download()
    except Exception as exc:
        raise BrainPropError(
            f"could not download {spec.name} (no internet? {type(exc).__name__}: "
            f"{one_line(exc)}): put {spec.files} in a folder and pass --data-dir FOLDER"
        ) from exc


# --- MNIST's format: an .npz or the four idx files ---------------------------------------

_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The files of the standard distribution, each also read gzipped (name + ".gz").
MNIST_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True)
class MnistLayout:
    """Where a data set in MNIST's format (28x28 grayscale, ten classes) keeps its files
    in a data folder: an .npz of the four arrays, or the four idx files in `idx_folder`
    ("" for the data folder itself)."""

    name: str  # the data set
    npz: str
    idx_folder: str = ""

    @property
    def files(self) -> str:
        """What to put in a --data-dir folder, for the help and the messages."""
        where = f" in a {self.idx_folder}/ subfolder" if self.idx_folder else ""
        return (f"{self.npz} (or the four idx files {', '.join(MNIST_IDX_FILES.values())}"
                f"{where}, gzipped or not)")

    def read(self, folder: Path) -> Splits:
        """x_train, y_train, x_test, y_test, images (N, 28, 28, 1), from `folder`/npz
        or, without it, from the four idx files (gzipped or not)."""
        if (folder / self.npz).is_file():
            return self._splits(self._read_npz(folder / self.npz))
        idx_folder = folder / self.idx_folder
        paths = {key: _idx_path(idx_folder, name) for key, name in MNIST_IDX_FILES.items()}
        if not any(paths.values()):
            raise BrainPropError(f"{self.name} not found: put {self.files} in {folder}")
        missing = [MNIST_IDX_FILES[key] for key, path in paths.items() if path is None]
        if missing:
            raise BrainPropError(
                f"{idx_folder} lacks {', '.join(missing)} (or .gz); put all four "
                f"{self.name} idx files there"
            )
        dimensions = {"x": 3, "y": 1}
        arrays = {key: _read_idx(path, dimensions[key[0]]) for key, path in paths.items()}
        return self._splits(arrays, {key: path.name for key, path in paths.items()})

    def _read_npz(self, path: Path) -> dict[str, np.ndarray]:
        with _reading(self.npz), np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _MNIST_KEYS if key not in npz.files]
            if missing:
                raise BrainPropError(f"{self.npz} has no {', '.join(missing)}; get the file again")
            return {key: npz[key] for key in _MNIST_KEYS}

    def _splits(self, arrays: dict[str, np.ndarray], names: dict[str, str] | None = None) -> Splits:
        """The four arrays checked; errors name the idx file, or the .npz: key."""
        what = names or {key: f"{self.npz}: {key}" for key in _MNIST_KEYS}
        splits = []
        for split in ("train", "test"):
            images = _check_images(arrays[f"x_{split}"], (None, 28, 28), what[f"x_{split}"])
            labels = _check_labels(arrays[f"y_{split}"], len(images), 10, what[f"y_{split}"])
            splits += [images[..., None], labels]
        return tuple(splits)


def _idx_path(folder: Path, name: str) -> Path | None:
    """`name` in `folder`, or else `name`.gz, or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, dimensions: int) -> np.ndarray:
    """The uint8 array of an idx file (the MNIST format), gunzipped if it ends in .gz.

    An idx file is two zero bytes, a type byte (0x08: unsigned bytes), the number of
    dimensions, each size as a big-endian 32-bit integer, then the values row-major.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with _reading(path.name), opener(path, "rb") as f:
        content = f.read()
    header = 4 + 4 * dimensions
    expected = bytes([0, 0, 0x08, dimensions])
    if len(content) < header or content[:4] != expected:
        raise BrainPropError(
            f"{path.name}: not an idx file of {dimensions}-dimensional unsigned bytes "
            f"(it starts {content[:4].hex() or 'empty'}, expected {expected.hex()}); "
            "if it is truncated or corrupt, get it again"
        )
    shape = tuple(int.from_bytes(content[4 * i : 4 * i + 4], "big") for i in range(1, dimensions + 1))
    if len(content) != header + math.prod(shape):
        raise BrainPropError(
            f"{path.name}: {len(content) - header} bytes of values for shape {shape}, "
            f"expected {math.prod(shape)}; if it is truncated or corrupt, get it again"
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(shape).copy()


# --- CIFAR pickles, in their folder or in the original tarball -----------------------------


@dataclasses.dataclass(frozen=True)
class _CifarLayout:
    name: str  # the dataset
    folder: str  # the extracted folder, also the folder inside the tarball
    tarball: str
    train: tuple[str, ...]  # pickles of the training split
    test: tuple[str, ...]
    label_key: str
    n_classes: int

    @property
    def files(self) -> str:
        """What to put in a --data-dir folder, for the help and the messages."""
        return f"{self.tarball} (or the extracted {self.folder}/)"


_CIFAR10 = _CifarLayout(
    "CIFAR10",
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    10,
)
_CIFAR100 = _CifarLayout(
    "CIFAR100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels",
    100,
)


def _read_cifar(layout: _CifarLayout, folder: Path) -> Splits:
    """The training and test splits of a CIFAR data set, from its folder or its tarball."""
    pickles = _cifar_pickles(layout, folder)
    splits = []
    for members in (layout.train, layout.test):
        parts = [_cifar_arrays(layout, name, pickles[name]) for name in members]
        splits += [_stack_images([x for x, _ in parts]), np.concatenate([y for _, y in parts])]
    return tuple(splits)


def _stack_images(parts: list[np.ndarray]) -> np.ndarray:
    """The (transposed) image arrays `parts` as one C-contiguous array, copied once."""
    stacked = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), np.uint8)
    start = 0
    for part in parts:
        stacked[start : start + len(part)] = part
        start += len(part)
    return stacked


def _cifar_pickles(layout: _CifarLayout, folder: Path) -> dict[str, object]:
    """Unpickled contents of each of `layout`'s files, by file name."""
    names = layout.train + layout.test
    directory = folder / layout.folder
    if directory.is_dir():
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise BrainPropError(
                f"{layout.folder}/ in {folder} lacks {', '.join(missing)}; "
                f"put the complete {layout.folder}/ (or {layout.tarball}) there"
            )
        return {name: _unpickle_file(directory / name, f"{layout.folder}/{name}") for name in names}
    if (folder / layout.tarball).is_file():
        return _unpickle_tar_members(folder / layout.tarball, layout.folder, names)
    raise BrainPropError(f"{layout.name} not found: put {layout.files} in {folder}")


_CIFAR_HOLDS = "a CIFAR batch"


def _unpickle_file(path: Path, label: str) -> object:
    with _reading(label), open(path, "rb") as f:
        return safepickle.load(f, str(path), _CIFAR_HOLDS, encoding="bytes")


def _unpickle_tar_members(path: Path, inner: str, names: tuple[str, ...]) -> dict[str, object]:
    """Unpickle `inner`/name for each name, in one pass over the tarball (no extraction)."""
    wanted = {f"{inner}/{name}": name for name in names}
    found = {}
    with _reading(path.name), tarfile.open(path, "r:*") as tar:
        for member in tar:
            name = wanted.get(member.name.removeprefix("./"))
            if name is not None and member.isfile():
                found[name] = safepickle.load(
                    tar.extractfile(member), f"{path}: {member.name}", _CIFAR_HOLDS,
                    encoding="bytes",
                )
    missing = [f"{inner}/{name}" for name in names if name not in found]
    if missing:
        raise BrainPropError(f"{path.name} lacks {', '.join(missing)}; get the file again")
    return found


def _cifar_arrays(
    layout: _CifarLayout, name: str, content: object
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and labels (N,) of one unpickled CIFAR file."""
    what = f"{layout.folder}/{name}"
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise BrainPropError(f"{what} holds a {kind}, expected a dict; get the file again")
    entries = {}
    for key in ("data", layout.label_key):
        value = content.get(key.encode(), content.get(key))
        if value is None:
            raise BrainPropError(f"{what} has no {key!r} entry; get the file again")
        entries[key] = value
    rows = _check_images(entries["data"], (None, 3072), f"{what}: data")
    n_classes = layout.n_classes
    label_what = f"{what}: {layout.label_key}"
    labels = _check_labels(entries[layout.label_key], len(rows), n_classes, label_what)
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


# --- the declarations -------------------------------------------------------------------


def _fixed(read: Callable[[Path], Splits]) -> Callable[[Path, str | None], Read]:
    """A reader of a data set that numbers its classes without naming them."""
    return lambda folder, class_order: Read(read(folder))


def _read_tinyimagenet(folder: Path, class_order: str | None) -> Read:
    from brainprop.data.tinyimagenet import read_tinyimagenet  # Pillow, only when needed

    splits, classes, source = read_tinyimagenet(folder, class_order)
    return Read(splits, tuple(classes), source)


_MNIST = MnistLayout("MNIST", "mnist.npz")

register_dataset(DatasetSpec(
    "MNIST", _MNIST.files, _fixed(_MNIST.read), n_classes=10, download=_download_mnist,
    paper_architectures=("dense", "loccon", "conv"),
))
register_dataset(DatasetSpec(
    "CIFAR10", _CIFAR10.files, _fixed(functools.partial(_read_cifar, _CIFAR10)), n_classes=10,
    download=functools.partial(_download_cifar, "cifar10"),
    paper_architectures=("loccon", "conv", "deep"),
))
register_dataset(DatasetSpec(
    "CIFAR100", _CIFAR100.files, _fixed(functools.partial(_read_cifar, _CIFAR100)),
    n_classes=100, download=functools.partial(_download_cifar, "cifar100", label_mode="fine"),
    paper_architectures=("loccon", "conv", "deep"),
))
# Never downloaded: read from --data-dir or the current directory, classes counted.
register_dataset(DatasetSpec(
    "TinyImageNet", "tiny-imagenet-200/", _read_tinyimagenet,
    paper_architectures=("deep",), orders_classes=True,
))

# Beyond the paper: every network its 28x28 images allow.  Its idx files have MNIST's
# names, so they go into a fashion-mnist/ subfolder of --data-dir (keras.datasets keeps
# them in ~/.keras/datasets/fashion-mnist/ too).
_FASHION_MNIST = MnistLayout("FashionMNIST", "fashion-mnist.npz", "fashion-mnist")

register_dataset(DatasetSpec(
    "FashionMNIST", _FASHION_MNIST.files, _fixed(_FASHION_MNIST.read), n_classes=10,
    download=functools.partial(_download_mnist, "fashion_mnist"),
))
