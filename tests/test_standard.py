"""The standard files of MNIST, FashionMNIST, CIFAR10 and CIFAR100, and their downloads:
each test writes small files in the real on-disk formats."""

import pickle
from pathlib import Path

import keras
import numpy as np
import pytest
from data_files import (
    cifar_pickle,
    cifar_rows,
    idx_bytes,
    images,
    labels,
    mnist_arrays,
    tar_folder,
    write_cifar10,
    write_cifar100,
    write_mnist,
    write_mnist_idx,
)

from brainprop.data.datasets import DATASETS, Dataset, dataset_spec, load_dataset
from brainprop.data.standard import MNIST_IDX_FILES
from brainprop.utils.errors import BrainPropError

pytestmark = pytest.mark.backend_independent


def check_matches(data: Dataset, expected: dict, name: str, shape: tuple) -> None:
    assert data.name == name and data.n_classes == DATASETS[name].n_classes
    assert data.input_shape == shape
    for key in ("x_train", "x_test"):
        array = getattr(data, key)
        assert array.dtype == np.uint8 and array.shape[1:] == shape
        assert array.flags.c_contiguous  # fast batch gathering
        np.testing.assert_array_equal(array.reshape(expected[key].shape), expected[key])
    for key in ("y_train", "y_test"):
        array = getattr(data, key)
        assert array.dtype == np.int32 and array.shape == (len(expected[key]),)
        np.testing.assert_array_equal(array, expected[key])


def load(name: str, data_dir=None) -> Dataset:
    """The declared data set `name`, read from `data_dir` (downloaded without one)."""
    return load_dataset(dataset_spec(name), data_dir)


def error_of(name: str, data_dir) -> str:
    with pytest.raises(BrainPropError) as info:
        load(name, data_dir)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message
    return message


# --- reading the files -----------------------------------------------------------------------


def test_mnist_npz(tmp_path):
    expected = write_mnist(tmp_path)
    data = load("MNIST", tmp_path)
    check_matches(data, expected, "MNIST", (28, 28, 1))
    assert data.x_train.shape == (7, 28, 28, 1) and data.x_test.shape == (3, 28, 28, 1)


def test_mnist_accepts_str_path(tmp_path):
    write_mnist(tmp_path)
    assert load("MNIST", str(tmp_path)).x_train.shape == (7, 28, 28, 1)


@pytest.mark.parametrize(
    "gz", [(False,) * 4, (True,) * 4, (True, False, False, True)], ids=["raw", "gz", "mixed"]
)
def test_mnist_idx_files(tmp_path, gz):
    expected = write_mnist_idx(tmp_path, gz)
    data = load("MNIST", tmp_path)
    check_matches(data, expected, "MNIST", (28, 28, 1))
    assert data.x_train.shape == (7, 28, 28, 1) and data.x_test.shape == (3, 28, 28, 1)


def test_mnist_idx_bytes_are_the_distributions():
    # The first bytes of train-labels-idx1-ubyte of the real distribution.
    head = idx_bytes(np.array([5, 0, 4, 1], np.uint8))
    assert head == bytes.fromhex("00000801 00000004 05000401")


def test_mnist_npz_preferred_to_idx_files(tmp_path):
    expected = write_mnist(tmp_path)
    write_mnist_idx(tmp_path, n_train=4)
    check_matches(load("MNIST", tmp_path), expected, "MNIST", (28, 28, 1))


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4], ids=["raw", "gz"])
def test_fashion_mnist_idx_files_in_their_subfolder_beside_mnists(tmp_path, gz):
    (tmp_path / "fashion-mnist").mkdir()
    expected = write_mnist_idx(tmp_path / "fashion-mnist", gz, n_train=5)
    mnist = write_mnist_idx(tmp_path, n_train=6)  # the same file names, one folder up
    check_matches(load("FashionMNIST", tmp_path), expected, "FashionMNIST", (28, 28, 1))
    check_matches(load("MNIST", tmp_path), mnist, "MNIST", (28, 28, 1))


def test_fashion_mnist_npz(tmp_path):
    arrays = mnist_arrays(4, 2, 8)
    np.savez(tmp_path / "fashion-mnist.npz", **arrays)
    write_mnist(tmp_path)
    check_matches(load("FashionMNIST", tmp_path), arrays, "FashionMNIST", (28, 28, 1))


def test_fashion_mnist_missing_files_say_where_they_go(tmp_path):
    write_mnist_idx(tmp_path)  # MNIST's files are not Fashion-MNIST's
    message = error_of("FashionMNIST", tmp_path)
    assert "fashion-mnist.npz" in message and "fashion-mnist/ subfolder" in message


def test_fashion_mnist_idx_file_missing_names_the_subfolder(tmp_path):
    (tmp_path / "fashion-mnist").mkdir()
    write_mnist_idx(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist" / MNIST_IDX_FILES["y_test"]).unlink()
    message = error_of("FashionMNIST", tmp_path)
    assert "fashion-mnist lacks t10k-labels-idx1-ubyte" in message


def test_fashion_mnist_downloads_from_keras(monkeypatch):
    x, y = images(4, (28, 28), 0), labels(4, 10, 1).astype(np.uint8)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data",
                        lambda: ((x, y), (x[:2], y[:2])))
    data = load("FashionMNIST")
    assert data.x_train.shape == (4, 28, 28, 1) and data.n_classes == 10
    np.testing.assert_array_equal(data.x_train[..., 0], x)


def test_cifar10_folder_with_unequal_batches(tmp_path):
    expected = write_cifar10(tmp_path)
    data = load("CIFAR10", tmp_path)
    check_matches(data, expected, "CIFAR10", (32, 32, 3))
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_test.shape == (3, 32, 32, 3)


def test_cifar_channel_order(tmp_path):
    """Row layout is R plane, G plane, B plane, each row-major: check it pixel by pixel."""
    write_cifar10(tmp_path)
    rows = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes(),
                        encoding="bytes")[b"data"]
    x = load("CIFAR10", tmp_path).x_test
    for n, row, col in ((0, 0, 0), (1, 0, 31), (2, 31, 0), (0, 5, 17)):
        for channel in range(3):
            assert x[n, row, col, channel] == rows[n, channel * 1024 + row * 32 + col]


def test_cifar10_tarball(tmp_path):
    expected = write_cifar10(tmp_path, sizes=(2, 5, 1, 1, 3), n_test=4)
    tar_folder(tmp_path, "cifar-10-batches-py", "cifar-10-python.tar.gz")
    assert not (tmp_path / "cifar-10-batches-py").exists()
    check_matches(load("CIFAR10", tmp_path), expected, "CIFAR10", (32, 32, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_cifar10_folder_preferred_to_tarball(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    assert len(load("CIFAR10", tmp_path).x_train) == 15


def test_cifar100_folder_uses_fine_labels(tmp_path):
    expected = write_cifar100(tmp_path)
    data = load("CIFAR100", tmp_path)
    check_matches(data, expected, "CIFAR100", (32, 32, 3))
    assert data.n_classes == 100


def test_cifar100_tarball(tmp_path):
    expected = write_cifar100(tmp_path, n_train=5, n_test=2)
    tar_folder(tmp_path, "cifar-100-python", "cifar-100-python.tar.gz")
    check_matches(load("CIFAR100", tmp_path), expected, "CIFAR100", (32, 32, 3))


# --- keras.datasets --------------------------------------------------------------------------


def test_download_success_shapes(monkeypatch):
    """Keras gives MNIST as (N, 28, 28), CIFAR labels as (N, 1), CIFAR100 fine on request."""
    x, y = images(4, (28, 28), 0), labels(4, 10, 1).astype(np.uint8)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: ((x, y), (x[:2], y[:2])))
    data = load("MNIST")
    assert data.x_train.shape == (4, 28, 28, 1) and data.y_test.shape == (2,)

    calls = []

    def cifar100(label_mode="fine"):
        calls.append(label_mode)
        xc = images(3, (32, 32, 3), 2)
        return (xc, labels(3, 100, 3)[:, None]), (xc[:1], np.array([[99]]))

    monkeypatch.setattr(keras.datasets.cifar100, "load_data", cifar100)
    data = load("CIFAR100")
    assert calls == ["fine"]
    assert data.x_train.shape == (3, 32, 32, 3) and data.y_train.shape == (3,)
    assert data.y_test.tolist() == [99] and data.y_train.dtype == np.int32


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, needed",
    [("MNIST", ["mnist.npz"]),
     ("CIFAR10", ["cifar-10-python.tar.gz", "cifar-10-batches-py"]),
     ("CIFAR100", ["cifar-100-python.tar.gz", "cifar-100-python"])],
)
def test_missing_files(tmp_path, name, needed):
    message = error_of(name, tmp_path)
    assert str(tmp_path) in message
    for file in needed:
        assert file in message


def test_missing_cifar_batch_in_folder(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    assert "data_batch_4" in error_of("CIFAR10", tmp_path)


def test_missing_member_in_tarball(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    tar_folder(tmp_path, "cifar-100-python", "cifar-100-python.tar.gz")
    message = error_of("CIFAR100", tmp_path)
    assert "cifar-100-python.tar.gz" in message and "cifar-100-python/test" in message


def truncate(path: Path, keep: float = 0.5) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_truncated_npz(tmp_path, keep):
    write_mnist(tmp_path)
    truncate(tmp_path / "mnist.npz", keep)
    message = error_of("MNIST", tmp_path)
    assert message.startswith("mnist.npz:") and "corrupt" in message


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.95])
def test_truncated_tarball(tmp_path, keep):
    write_cifar10(tmp_path)
    truncate(tar_folder(tmp_path, "cifar-10-batches-py", "cifar-10-python.tar.gz"), keep)
    message = error_of("CIFAR10", tmp_path)
    assert "cifar-10-python.tar.gz" in message


def test_truncated_pickle(tmp_path):
    write_cifar10(tmp_path)
    truncate(tmp_path / "cifar-10-batches-py" / "data_batch_2")
    message = error_of("CIFAR10", tmp_path)
    assert message.startswith("cifar-10-batches-py/data_batch_2:") and "corrupt" in message


def test_pickle_of_wrong_type(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps([1, 2, 3]))
    assert "cifar-100-python/train" in error_of("CIFAR100", tmp_path)


def test_pickle_claiming_more_bytes_than_it_holds_is_refused_in_one_line(tmp_path, capsys):
    from brainprop.utils.errors import run_command

    write_cifar100(tmp_path)
    # BYTEARRAY8 (protocol 5) of 2**40 bytes, in a file of a few.
    (tmp_path / "cifar-100-python" / "train").write_bytes(
        b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"abc.")
    assert run_command("main.py", lambda: load("CIFAR100", tmp_path)) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "cifar-100-python/train: cannot read it" in errors[0], errors


def test_pickle_without_labels(tmp_path):
    write_cifar100(tmp_path)
    cifar_pickle(tmp_path / "cifar-100-python" / "test",
                 {"data": cifar_rows(images(2, (32, 32, 3), 0)), "coarse_labels": [1, 2]})
    message = error_of("CIFAR100", tmp_path)
    assert "cifar-100-python/test" in message and "fine_labels" in message


def test_mnist_idx_file_missing(tmp_path):
    write_mnist_idx(tmp_path, gz=(True,) * 4)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    message = error_of("MNIST", tmp_path)
    assert "lacks t10k-labels-idx1-ubyte (or .gz)" in message and str(tmp_path) in message


@pytest.mark.parametrize("keep", [0.0, 0.001, 0.5, 0.999])
@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file(tmp_path, keep, gz):
    write_mnist_idx(tmp_path, gz=(gz,) * 4)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    truncate(tmp_path / name, keep)
    message = error_of("MNIST", tmp_path)
    assert message.startswith(f"{name}:") and "corrupt" in message


def test_idx_file_of_the_wrong_kind(tmp_path):
    write_mnist_idx(tmp_path)
    labels_file = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(labels_file)
    message = error_of("MNIST", tmp_path)
    assert message.startswith("t10k-images-idx3-ubyte: not an idx file")
    assert "00000801" in message and "00000803" in message


def test_gz_that_is_not_gzip(tmp_path):
    write_mnist_idx(tmp_path, gz=(False, True, False, False))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    message = error_of("MNIST", tmp_path)
    assert message.startswith("train-labels-idx1-ubyte.gz: cannot read it") and "corrupt" in message


@pytest.mark.parametrize(
    "override, words",
    [
        ({"x_train": images(7, (28, 27), 0)}, "train-images-idx3-ubyte has shape (7, 28, 27), "
         "expected (N, 28, 28)"),
        ({"y_train": np.zeros(6, np.uint8)}, "train-labels-idx1-ubyte has 6 labels for 7 images"),
        ({"y_test": np.array([1, 10, 2], np.uint8)}, "t10k-labels-idx1-ubyte has values from "
         "1 to 10, expected 0 to 9"),
    ],
)
def test_idx_contents_checked_like_npz(tmp_path, override, words):
    write_mnist_idx(tmp_path, **override)
    assert error_of("MNIST", tmp_path) == words


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=images(2, (28, 28), 0), y_train=[1, 2])
    message = error_of("MNIST", tmp_path)
    assert "x_test" in message and "y_test" in message


def test_mnist_wrong_shape(tmp_path):
    write_mnist(tmp_path, x_train=np.zeros((10, 5), np.uint8))
    message = error_of("MNIST", tmp_path)
    assert message == "mnist.npz: x_train has shape (10, 5), expected (N, 28, 28)"


def test_mnist_wrong_dtype(tmp_path):
    write_mnist(tmp_path, x_test=np.zeros((3, 28, 28), np.float32))
    assert error_of("MNIST", tmp_path) == "mnist.npz: x_test has dtype float32, expected uint8"


def test_mnist_float_labels(tmp_path):
    write_mnist(tmp_path, y_train=np.zeros(7, np.float64))
    message = error_of("MNIST", tmp_path)
    assert "y_train" in message and "float64" in message


def test_mnist_label_length_mismatch(tmp_path):
    write_mnist(tmp_path, y_train=np.zeros(6, np.uint8))
    message = error_of("MNIST", tmp_path)
    assert "mnist.npz: y_train" in message and "6 labels for 7 images" in message


def test_cifar_wrong_shape(tmp_path):
    write_cifar10(tmp_path)
    cifar_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_3",
                 {"data": np.zeros((2, 1024), np.uint8), "labels": [0, 1]})
    message = error_of("CIFAR10", tmp_path)
    expected = "cifar-10-batches-py/data_batch_3: data has shape (2, 1024), expected (N, 3072)"
    assert message == expected


def test_cifar_wrong_dtype(tmp_path):
    write_cifar10(tmp_path)
    cifar_pickle(tmp_path / "cifar-10-batches-py" / "test_batch",
                 {"data": np.zeros((2, 3072), np.int64), "labels": [0, 1]})
    message = error_of("CIFAR10", tmp_path)
    assert "test_batch" in message and "int64" in message and "uint8" in message


def test_cifar_label_length_mismatch(tmp_path):
    write_cifar10(tmp_path)
    cifar_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_5",
                 {"data": cifar_rows(images(3, (32, 32, 3), 0)), "labels": [0, 1]})
    message = error_of("CIFAR10", tmp_path)
    assert "data_batch_5" in message and "2 labels for 3 images" in message


@pytest.mark.parametrize("bad", [10, -1])
def test_cifar10_label_out_of_range(tmp_path, bad):
    write_cifar10(tmp_path)
    cifar_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1",
                 {"data": cifar_rows(images(2, (32, 32, 3), 0)), "labels": [0, bad]})
    message = error_of("CIFAR10", tmp_path)
    assert "data_batch_1" in message and str(bad) in message and "0 to 9" in message


def test_cifar100_fine_label_out_of_range(tmp_path):
    write_cifar100(tmp_path)
    cifar_pickle(tmp_path / "cifar-100-python" / "train",
                 {"data": cifar_rows(images(2, (32, 32, 3), 0)),
                  "fine_labels": [100, 3], "coarse_labels": [1, 2]})
    assert "0 to 99" in error_of("CIFAR100", tmp_path)


def test_download_channels_first_made_channels_last(monkeypatch):
    """Under image_data_format channels_first Keras gives CIFAR as (N, 3, 32, 32)."""
    x = images(2, (32, 32, 3), 5)
    first = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    monkeypatch.setattr(keras.config, "image_data_format", lambda: "channels_first")
    monkeypatch.setattr(
        keras.datasets.cifar10, "load_data", lambda: ((first, [[1], [2]]), (first, [[3], [4]]))
    )
    data = load("CIFAR10")
    np.testing.assert_array_equal(data.x_train, x)
    assert data.y_test.tolist() == [3, 4]


# --- pickles that would run code ----------------------------------------------------------------


def test_cifar_batch_that_runs_code_is_refused_and_never_run(tmp_path):
    from hostile import Payload

    write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    # Stealth: the payload returns valid labels, so the batch would load as data.
    n = 5
    entries = {"data": cifar_rows(images(n, (32, 32, 3), 0)),
               "labels": Payload(marker, [1] * n), "batch_label": b"b"}
    cifar_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_5", entries)
    message = error_of("CIFAR10", tmp_path)
    assert not marker.exists()
    assert "data_batch_5" in message and "refused" in message and "eval" in message


def test_cifar_tarball_member_that_runs_code_is_refused_and_never_run(tmp_path):
    from hostile import Payload

    write_cifar100(tmp_path)
    marker = tmp_path / "marker"
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump(Payload(marker), f)
    tar_folder(tmp_path, "cifar-100-python", "cifar-100-python.tar.gz")
    message = error_of("CIFAR100", tmp_path)
    assert not marker.exists()
    assert "cifar-100-python.tar.gz" in message and "cifar-100-python/test" in message
    assert "refused" in message


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_still_load(tmp_path, monkeypatch, protocol):
    def dump(path, entries):
        with open(path, "wb") as f:
            pickle.dump({k.encode(): v for k, v in entries.items()}, f, protocol=protocol)

    monkeypatch.setattr(__import__(__name__), "cifar_pickle", dump)
    expected = write_cifar100(tmp_path)
    check_matches(load("CIFAR100", tmp_path), expected, "CIFAR100", (32, 32, 3))
