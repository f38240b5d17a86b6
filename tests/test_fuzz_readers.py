"""Every reader of outside files that needs no Keras backend, fuzzed (`fuzzing.py`):
the data sets' files (mnist.npz, the idx files, the CIFAR pickles in their folder and
in their tarball, Tiny ImageNet's folder, annotations, cache and class-order file, your
own .npz and image folder with its cache) and the runs folder the report reads
(summaries, JSON and pickled histories).

Damaged copies of a valid input are read or refused in one line with exit status 2,
changing no file.  These tests import no backend: CI runs them once (under
TensorFlow), not once per backend (`backend_independent`).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from data_files import idx_bytes, tar_folder, write_cifar10, write_cifar100, write_mnist, write_mnist_idx
from fuzzing import (
    HOSTILE_NAMES,
    JSON_VALUES,
    MARKER,
    NUMBERS,
    Reader,
    byte_damage,
    check_reader,
    on_file,
    writes,
)
from hostile import Payload
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tinyimagenet_files import smooth_image, write_tiny_imagenet

from brainprop.data.datasets import dataset_spec, load_dataset
from brainprop.data.standard import MNIST_IDX_FILES

pytestmark = pytest.mark.backend_independent


# --- values a file from elsewhere may hold ----------------------------------------------------

DTYPES = st.sampled_from([np.uint8, np.int8, np.int64, np.uint32, np.float32, np.float64,
                          np.bool_, np.complex64, "<U3", "S2", "<M8[s]"])
SHAPES = st.one_of(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
                   st.sampled_from([(2, 28, 28), (0, 28, 28), (2,), (2, 1), (3, 3072),
                                    (2, 28, 28, 1)]))
ARRAYS = hnp.arrays(DTYPES, SHAPES)


def hostile_pickle(folder: Path) -> bytes:
    """A pickle that, if loaded as pickles are, creates the marker beside the folder."""
    return pickle.dumps(Payload(folder.parent / MARKER, [1, 2]))


def deeply_nested_pickle(depth: int = 100_000) -> bytes:
    """A list nested `depth` deep, written opcode by opcode (pickle.dumps would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


PICKLED_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6), st.binary(max_size=6),
              ARRAYS, st.builds(set, st.lists(st.integers(), max_size=3))),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from([b"data", b"labels", b"fine_labels", "data", "labels",
                                         b"other", 1]), children, max_size=4)),
    max_leaves=8,
)


def pickle_damage(name: str | st.SearchStrategy[str]) -> st.SearchStrategy:
    """The pickle `name` replaced: by drawn data types, a pickle that runs code, or one
    nested too deep to rebuild with recursion."""
    def content(value, protocol):
        return lambda folder: pickle.dumps(value, protocol=protocol)

    drawn = st.builds(content, PICKLED_VALUES, st.integers(2, 5))
    special = st.sampled_from([hostile_pickle, lambda folder: deeply_nested_pickle(),
                               lambda folder: pickle.dumps({b"data": 1, b"labels": [2**70]})])
    names = name if isinstance(name, st.SearchStrategy) else st.just(name)
    return st.builds(lambda n, make: lambda folder: (folder / n).write_bytes(make(folder)),
                     names, st.one_of(drawn, special))


# --- MNIST ------------------------------------------------------------------------------------


def npz_damage(name: str, keys: tuple[str, ...]) -> st.SearchStrategy:
    """`name` rewritten as an .npz of drawn arrays under the expected keys (and others);
    also object arrays, which only a pickle can hold."""
    arrays = st.dictionaries(st.sampled_from([*keys, "other"]), ARRAYS, max_size=len(keys) + 1)

    def write(content):
        def damage(folder):
            np.savez(folder / name, **content)
        return damage

    def objects(folder):
        np.savez(folder / name, x_train=np.array([Payload(folder.parent / MARKER), 1],
                                                 dtype=object))

    return st.one_of(st.builds(write, arrays), st.just(objects))


MNIST_NPZ = Reader(
    name="mnist.npz",
    prog="main.py",
    write_valid=lambda folder: write_mnist(folder, n_train=3, n_test=2),
    read=lambda folder: load_dataset(dataset_spec("MNIST"), folder),
    damage=st.one_of(on_file("mnist.npz", byte_damage()),
                     npz_damage("mnist.npz", ("x_train", "y_train", "x_test", "y_test"))),
)

IDX_NAMES = [MNIST_IDX_FILES["x_train"], f"{MNIST_IDX_FILES['y_train']}.gz",
             MNIST_IDX_FILES["x_test"], f"{MNIST_IDX_FILES['y_test']}.gz"]


def idx_header_damage() -> st.SearchStrategy:
    """An idx file with a drawn header (type, dimensions, sizes up to 2**32 - 1) and body."""
    def write(name, start, sizes, body):
        def damage(folder):
            content = start + b"".join(n.to_bytes(4, "big") for n in sizes) + body
            (folder / name).write_bytes(gzip.compress(content) if name.endswith(".gz")
                                        else content)
        return damage

    starts = st.one_of(st.sampled_from([bytes([0, 0, 8, 3]), bytes([0, 0, 8, 1]),
                                        bytes([0, 0, 9, 3]), bytes([0, 0, 8, 0])]),
                       st.binary(min_size=4, max_size=4))
    sizes = st.lists(st.one_of(st.integers(0, 30), st.integers(0, 2**32 - 1)), max_size=4)
    return st.builds(write, st.sampled_from(IDX_NAMES), starts, sizes, st.binary(max_size=64))


def idx_of_array(folder: Path, name: str, array: np.ndarray) -> None:
    content = idx_bytes(array.astype(np.uint8))
    (folder / name).write_bytes(gzip.compress(content) if name.endswith(".gz") else content)


MNIST_IDX = Reader(
    name="idx",
    prog="main.py",
    write_valid=lambda folder: write_mnist_idx(folder, gz=(False, True, False, True),
                                               n_train=3, n_test=2),
    read=lambda folder: load_dataset(dataset_spec("MNIST"), folder),
    damage=st.one_of(
        on_file(st.sampled_from(IDX_NAMES), byte_damage()),
        idx_header_damage(),
        st.builds(lambda name, array: lambda folder: idx_of_array(folder, name, array),
                  st.sampled_from(IDX_NAMES),
                  hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))),
        writes(st.sampled_from([n.removesuffix(".gz") + ".gz" for n in IDX_NAMES]),
               st.binary(max_size=32).map(gzip.compress)),
    ),
)

# --- CIFAR ------------------------------------------------------------------------------------

CIFAR10_FILES = [f"cifar-10-batches-py/{name}" for name in
                 (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")]

CIFAR10_FOLDER = Reader(
    name="CIFAR10 folder",
    prog="main.py",
    write_valid=lambda folder: write_cifar10(folder, sizes=(1, 1, 1, 1, 1), n_test=1),
    read=lambda folder: load_dataset(dataset_spec("CIFAR10"), folder),
    damage=st.one_of(on_file(st.sampled_from(CIFAR10_FILES), byte_damage()),
                     pickle_damage(st.sampled_from(CIFAR10_FILES))),
)

TARBALL = "cifar-100-python.tar.gz"


def write_cifar100_tarball(folder: Path) -> None:
    write_cifar100(folder, n_train=2, n_test=1)
    tar_folder(folder, "cifar-100-python", TARBALL)


def tarball_damage() -> st.SearchStrategy:
    """The tarball rebuilt from drawn members: hostile names, links, folders, pickles."""
    member = st.tuples(
        st.one_of(st.sampled_from(["cifar-100-python/train", "cifar-100-python/test",
                                   "./cifar-100-python/train", "/cifar-100-python/test"]),
                  HOSTILE_NAMES.map(lambda n: f"cifar-100-python/{n}")),
        st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.FIFOTYPE]),
        st.one_of(PICKLED_VALUES.map(pickle.dumps), st.binary(max_size=32)),
    )

    def write(members, mode):
        def damage(folder):
            with tarfile.open(folder / TARBALL, mode) as tar:
                for name, kind, content in members:
                    info = tarfile.TarInfo(name.replace("\x00", ""))
                    info.type = kind
                    if kind == tarfile.REGTYPE:
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
                    else:
                        info.linkname = "../../etc/passwd" if kind != tarfile.DIRTYPE else ""
                        tar.addfile(info)
        return damage

    return st.builds(write, st.lists(member, max_size=4), st.sampled_from(["w:gz", "w", "w:bz2"]))


CIFAR100_TARBALL = Reader(
    name="CIFAR100 tarball",
    prog="main.py",
    write_valid=write_cifar100_tarball,
    read=lambda folder: load_dataset(dataset_spec("CIFAR100"), folder),
    damage=st.one_of(on_file(TARBALL, byte_damage()), tarball_damage()),
)

# --- Tiny ImageNet ----------------------------------------------------------------------------

TINY = "tiny-imagenet-200"
WNIDS = ("n02", "n03", "n01")
ANNOTATIONS = f"{TINY}/val/val_annotations.txt"
IMAGES = [f"{TINY}/train/{w}/images/{w}_0.JPEG" for w in WNIDS] + [
    f"{TINY}/val/images/val_{k}.JPEG" for k in range(3)]
CACHE = f"{TINY}/brainprop-cache.npz"


def write_tiny(folder: Path) -> None:
    """Three classes, one training and one validation image each (8x8), and the cache a
    first load writes."""
    write_tiny_imagenet(folder, n_train=(1, 1, 1), n_val=(1, 1, 1), size=8)
    load_dataset(dataset_spec("TinyImageNet"), folder)


def annotation_lines() -> st.SearchStrategy[bytes]:
    field = st.one_of(st.sampled_from([*(f"val_{k}.JPEG" for k in range(3)), *WNIDS, "0", "7"]),
                      HOSTILE_NAMES, st.just("../../train/n01/images/n01_0.JPEG"))
    line = st.lists(field, max_size=6).map("\t".join)
    text = st.lists(line, max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8",
                                                                                "surrogatepass"))
    return st.one_of(text, text.map(lambda t: t + b"\xff\xfe\n"), st.binary(max_size=64))


def image_damage(images: list[str]) -> st.SearchStrategy:
    """An image replaced by one of another size, mode or format, or by broken bytes."""
    def write(name, size, mode, fmt):
        def damage(folder):
            from PIL import Image

            image = Image.fromarray(smooth_image(3, size)).convert(mode)
            path = folder / name
            try:
                image.save(path, format=fmt)
            except (OSError, ValueError, KeyError):  # a mode the format cannot hold
                image.convert("RGB").save(path, format=fmt)
        return damage

    return st.one_of(
        st.builds(write, st.sampled_from(images), st.sampled_from([8, 6, 1, 9]),
                  st.sampled_from(["RGB", "L", "LA", "P", "CMYK", "I", "1", "RGBA"]),
                  st.sampled_from(["PNG", "TIFF", "GIF", "BMP", "JPEG"])),
        on_file(st.sampled_from(images), byte_damage()),
    )


def structure_damage() -> st.SearchStrategy:
    """A class without images, a file where a folder was, a folder where an image was."""
    def empty_class(folder):
        (folder / TINY / "train" / "n04" / "images").mkdir(parents=True)

    def file_for_class(folder):
        (folder / TINY / "train" / "n05").write_text("not a folder")

    def no_val_images(folder):
        for path in (folder / TINY / "val" / "images").iterdir():
            path.unlink()

    def image_folder(folder):
        path = folder / IMAGES[0]
        path.unlink()
        path.mkdir()

    return st.sampled_from([empty_class, file_for_class, no_val_images, image_folder])


def cache_damage(cache: str) -> st.SearchStrategy:
    """The cache rewritten with its version and fingerprint (so it is trusted) but drawn
    arrays; or its bytes broken (then it is ignored and rebuilt)."""
    def write(arrays):
        def damage(folder):
            with np.load(folder / cache) as npz:
                kept = {"version": npz["version"], "fingerprint": npz["fingerprint"]}
            np.savez(folder / cache, **kept, **arrays)
        return damage

    arrays = st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]),
                             st.one_of(ARRAYS, hnp.arrays(np.int32, st.just((3,)),
                                                          elements=st.integers(-5, 5))),
                             max_size=4)
    return st.one_of(st.builds(write, arrays), on_file(cache, byte_damage()))


TINY_IMAGENET = Reader(
    name="Tiny ImageNet",
    prog="main.py",
    write_valid=write_tiny,
    read=lambda folder: load_dataset(dataset_spec("TinyImageNet"), folder),
    damage=st.one_of(writes(ANNOTATIONS, annotation_lines()), on_file(ANNOTATIONS, byte_damage()),
                     image_damage(IMAGES), structure_damage(), cache_damage(CACHE)),
    may_write=(CACHE,),
)

CLASS_ORDER = Reader(
    name="class-order file",
    prog="main.py",
    write_valid=lambda folder: (write_tiny(folder),
                                (folder / "order.txt").write_text("n03\nn01\nn02\n")),
    read=lambda folder: load_dataset(dataset_spec("TinyImageNet"), folder, str(folder / "order.txt")),
    damage=st.one_of(writes("order.txt", annotation_lines()),
                     on_file("order.txt", byte_damage())),
)

# --- your own images: an .npz, or a folder of class folders ------------------------------------

OWN_NPZ = "images.npz"


def write_own_npz(folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(folder / OWN_NPZ, x_train=rng.integers(0, 256, (4, 5, 5, 3), dtype=np.uint8),
             y_train=np.array([0, 1, 2, 1]), x_test=rng.integers(0, 256, (2, 5, 5, 3),
                                                                   dtype=np.uint8),
             y_test=np.array([2, 0]))


def single_array(folder: Path) -> None:
    with open(folder / OWN_NPZ, "wb") as f:
        np.save(f, np.zeros((2, 5, 5), np.uint8))


OWN_NPZ_READER = Reader(
    name="own .npz",
    prog="main.py",
    write_valid=write_own_npz,
    read=lambda folder: load_dataset(dataset_spec(str(folder / OWN_NPZ))),
    damage=st.one_of(on_file(OWN_NPZ, byte_damage()),
                     npz_damage(OWN_NPZ, ("x_train", "y_train", "x_test", "y_test")),
                     st.just(single_array)),
)

OWN = "images"
OWN_IMAGES = [f"{OWN}/train/cat/0.png", f"{OWN}/train/cat/1.jpg", f"{OWN}/train/dog/0.PNG",
              f"{OWN}/test/cat/0.jpeg", f"{OWN}/test/dog/0.png"]
OWN_CACHE = f"{OWN}/brainprop-cache.npz"


def write_own_folder(folder: Path) -> None:
    """Two classes of 6x6 images, PNG and JPEG, and the cache a first load writes."""
    from PIL import Image

    for k, name in enumerate(OWN_IMAGES):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        Image.fromarray(smooth_image(k, 6)).save(path, format=fmt)
    load_dataset(dataset_spec(str(folder / OWN)))


def own_structure_damage() -> st.SearchStrategy:
    """Classes without images, test classes train/ lacks, files and links where folders
    were, an image that is a folder or a broken link."""
    def mkdir(relative):
        return lambda folder: (folder / OWN / relative).mkdir(parents=True, exist_ok=True)

    def write(relative, content=b"x"):
        return lambda folder: (folder / OWN / relative).write_bytes(content)

    def remove_tree(relative):
        return lambda folder: shutil.rmtree(folder / OWN / relative)

    def linked(relative, target):
        def damage(folder):
            path = folder / OWN / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            path.symlink_to(target)
        return damage

    return st.sampled_from([
        mkdir("train/bird"), mkdir("test/fish"), write("train/notes.png"),
        write("train/cat/.hidden.png"), remove_tree("test"), remove_tree("train/dog"),
        remove_tree("test/cat"), write("test/dog/0.png", b""),
        linked("train/cat/0.png", "nowhere"), linked("train/dog", "../train/dog"),
        linked("test", "train"), linked("train/cat/1.jpg", "1.jpg"),
    ])

OWN_FOLDER = Reader(
    name="own image folder",
    prog="main.py",
    write_valid=write_own_folder,
    read=lambda folder: load_dataset(dataset_spec(str(folder / OWN))),
    damage=st.one_of(
        image_damage(OWN_IMAGES),
        own_structure_damage(),
        cache_damage(OWN_CACHE),
    ),
    may_write=(OWN_CACHE,),
)

# --- the report's runs folder -----------------------------------------------------------------

STEM = "MNIST_dense_BrainProp_seed1"
SUMMARY_KEYS = ["dataset", "architecture", "algorithm", "seed", "best_epoch", "epochs_run",
                "best_val_accuracy", "test_accuracy_at_best_epoch", "interrupted", "files",
                "hyperparameters"]


def write_runs(folder: Path) -> None:
    """One run as main.py -s leaves it: summary, JSON history and history pickle."""
    from test_report import write_run

    write_run(folder, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    history = pickle.loads((folder / f"{STEM}_history.pkl").read_bytes())[2]
    (folder / f"{STEM}_history.json").write_text(json.dumps(
        {"dataset": "MNIST", "algorithm": "BrainProp", "history": history}))
    path = folder / f"{STEM}_summary.json"
    summary = json.loads(path.read_text())
    summary["files"]["history_json"] = f"{STEM}_history.json"
    summary["hyperparameters"] = {"max_epochs": 3}
    path.write_text(json.dumps(summary))


def json_edit(name: str, keys: list[str], inner: str | None = None) -> st.SearchStrategy:
    """The JSON file `name` with some entries (of `inner`, if given) set to drawn values
    or removed."""
    edits = st.lists(st.tuples(st.one_of(st.sampled_from(keys), st.text(max_size=6)),
                               st.one_of(JSON_VALUES, st.just(KeyError))), min_size=1,
                     max_size=4)

    def edit(changes):
        def damage(folder):
            content = json.loads((folder / name).read_text())
            target = content[inner] if inner else content
            for key, value in changes:
                if value is KeyError:
                    target.pop(key, None)
                else:
                    target[key] = value
            (folder / name).write_text(json.dumps(content))
        return damage

    return st.builds(edit, edits)


def history_metrics() -> list[str]:
    return ["val_accuracy", "accuracy", "loss", "val_class_accuracy", "lr"]


def pickled_history(folder: Path, history) -> None:
    """The history pickle holds `history` and the summary names it alone."""
    (folder / f"{STEM}_history.pkl").write_bytes(pickle.dumps(["MNIST", "BrainProp", history]))
    path = folder / f"{STEM}_summary.json"
    summary = json.loads(path.read_text())
    del summary["files"]["history_json"]
    path.write_text(json.dumps(summary))


def close_figure(fig, out_dir, name):
    """The report's figures drawn but not rendered to files (rendering is slow, and
    reads nothing): what they are drawn from is what the fuzzing is after."""
    from brainprop.utils.plotting import plt

    plt.close(fig)
    return []


def read_report(folder: Path) -> None:
    from brainprop.tables.report import write_report

    with mock.patch("brainprop.tables.report._save_figure", close_figure):
        write_report(folder, folder.parent / "report")


HISTORY_VALUES = st.one_of(JSON_VALUES, st.lists(NUMBERS, max_size=4),
                           st.lists(st.lists(NUMBERS, max_size=3), max_size=3))

REPORT = Reader(
    name="runs folder",
    prog="report",
    write_valid=write_runs,
    read=read_report,
    damage=st.one_of(
        json_edit(f"{STEM}_summary.json", SUMMARY_KEYS),
        st.builds(lambda name: lambda folder: json_edit_files(folder, name), HOSTILE_NAMES),
        on_file(st.sampled_from([f"{STEM}_summary.json", f"{STEM}_history.json"]),
                byte_damage()),
        json_edit(f"{STEM}_history.json", history_metrics(), inner="history"),
        st.builds(lambda h: lambda folder: pickled_history(folder, h),
                  st.dictionaries(st.sampled_from(history_metrics()), HISTORY_VALUES,
                                  max_size=3)),
        st.builds(lambda edit: lambda folder: (pickled_history(folder, {}), edit(folder)),
                  pickle_damage(f"{STEM}_history.pkl")),
    ),
)


def json_edit_files(folder: Path, name: str) -> None:
    """The summary names `name` as its history file."""
    path = folder / f"{STEM}_summary.json"
    summary = json.loads(path.read_text())
    summary["files"]["history_json"] = name
    path.write_text(json.dumps(summary))


READERS = [MNIST_NPZ, MNIST_IDX, CIFAR10_FOLDER, CIFAR100_TARBALL, TINY_IMAGENET, CLASS_ORDER,
           OWN_NPZ_READER, OWN_FOLDER, REPORT]


@pytest.mark.parametrize("reader", READERS, ids=lambda reader: reader.name)
def test_damaged_files_are_read_or_refused_in_one_line_changing_nothing(reader):
    check_reader(reader)
