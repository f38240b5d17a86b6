"""The standard files of MNIST, FashionMNIST, CIFAR10 and CIFAR100, and their downloads.

Without a data folder the data come from `keras.datasets` (downloaded once, then cached
by Keras: `download_mnist`, `download_cifar`).  Offline, `--data-dir` points at the
standard files instead: `mnist.npz` or the four idx files of the MNIST distribution
(`train-images-idx3-ubyte` and the others, gzipped or not), `cifar-10-batches-py/` or
`cifar-10-python.tar.gz`, `cifar-100-python/` or `cifar-100-python.tar.gz`,
`fashion-mnist.npz` or MNIST's four idx files in a `fashion-mnist/` subfolder.  The
number of images per file is read from the files.  Each layout (`MnistLayout`,
`CifarLayout`) names its files for the help and the messages, and reads them.

Reading local files needs no Keras backend, so a missing file is reported at once.

The CIFAR files are Python pickles; they are read by `brainprop.utils.safepickle`, which
admits only the arrays, dicts, lists and strings such a file holds and refuses any other
pickle (which could run code when loaded) in one line.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import tarfile
from pathlib import Path

import numpy as np

from brainprop.data.checks import Splits, check_images, check_labels, reading
from brainprop.utils import safepickle
from brainprop.utils.backend import start
from brainprop.utils.errors import BrainPropError

# --- keras.datasets: Keras starts only here, local files need no backend ---------------------


def download_mnist(module: str = "mnist") -> Splits:
    """MNIST (or, `module` "fashion_mnist", FashionMNIST) from keras.datasets, images
    (N, 28, 28, 1)."""
    keras = start()

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, module).load_data()
    return x_train[..., None], y_train, x_test[..., None], y_test


def download_cifar(module: str, **kwargs) -> Splits:
    """CIFAR10 or CIFAR100 (`module`) from keras.datasets, images (N, 32, 32, 3)."""
    keras = start()

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, module).load_data(**kwargs)
    if keras.config.image_data_format() == "channels_first":  # Keras gave (N, 3, 32, 32)
        x_train, x_test = (np.ascontiguousarray(x.transpose(0, 2, 3, 1)) for x in (x_train, x_test))
    return x_train, y_train, x_test, y_test


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
        with reading(self.npz), np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _MNIST_KEYS if key not in npz.files]
            if missing:
                raise BrainPropError(f"{self.npz} has no {', '.join(missing)}; get the file again")
            return {key: npz[key] for key in _MNIST_KEYS}

    def _splits(self, arrays: dict[str, np.ndarray], names: dict[str, str] | None = None) -> Splits:
        """The four arrays checked; errors name the idx file, or the .npz: key."""
        what = names or {key: f"{self.npz}: {key}" for key in _MNIST_KEYS}
        splits = []
        for split in ("train", "test"):
            images = check_images(arrays[f"x_{split}"], (None, 28, 28), what[f"x_{split}"])
            labels = check_labels(arrays[f"y_{split}"], len(images), 10, what[f"y_{split}"])
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
    with reading(path.name), opener(path, "rb") as f:
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


MNIST = MnistLayout("MNIST", "mnist.npz")
# Its idx files have MNIST's names, so they go into a fashion-mnist/ subfolder of
# --data-dir (keras.datasets keeps them in ~/.keras/datasets/fashion-mnist/ too).
FASHION_MNIST = MnistLayout("FashionMNIST", "fashion-mnist.npz", "fashion-mnist")


# --- CIFAR pickles, in their folder or in the original tarball -----------------------------


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR data set keeps its pickles in a data folder: in the extracted
    `folder`, or in the original `tarball` (read without extracting it)."""

    name: str  # the data set
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

    def read(self, folder: Path) -> Splits:
        """The training and test splits, from `folder`/folder or `folder`/tarball."""
        pickles = _cifar_pickles(self, folder)
        splits = []
        for members in (self.train, self.test):
            parts = [_cifar_arrays(self, name, pickles[name]) for name in members]
            splits += [_stack_images([x for x, _ in parts]), np.concatenate([y for _, y in parts])]
        return tuple(splits)


CIFAR10 = CifarLayout(
    "CIFAR10",
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    10,
)
CIFAR100 = CifarLayout(
    "CIFAR100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels",
    100,
)


def _stack_images(parts: list[np.ndarray]) -> np.ndarray:
    """The (transposed) image arrays `parts` as one C-contiguous array, copied once."""
    stacked = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), np.uint8)
    start = 0
    for part in parts:
        stacked[start : start + len(part)] = part
        start += len(part)
    return stacked


def _cifar_pickles(layout: CifarLayout, folder: Path) -> dict[str, object]:
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
    with reading(label), open(path, "rb") as f:
        return safepickle.load(f, str(path), _CIFAR_HOLDS, encoding="bytes")


def _unpickle_tar_members(path: Path, inner: str, names: tuple[str, ...]) -> dict[str, object]:
    """Unpickle `inner`/name for each name, in one pass over the tarball (no extraction)."""
    wanted = {f"{inner}/{name}": name for name in names}
    found = {}
    with reading(path.name), tarfile.open(path, "r:*") as tar:
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
    layout: CifarLayout, name: str, content: object
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
    rows = check_images(entries["data"], (None, 3072), f"{what}: data")
    n_classes = layout.n_classes
    label_what = f"{what}: {layout.label_key}"
    labels = check_labels(entries[layout.label_key], len(rows), n_classes, label_what)
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
