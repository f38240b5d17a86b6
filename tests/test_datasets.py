"""The data sets' declarations: a dataset argument resolved once (`dataset_spec`), the
options a data set takes, and what every load checks whatever the reader."""

import urllib.error

import keras
import numpy as np
import pytest
from data_files import write_mnist

from brainprop.data.datasets import (
    DATASETS,
    build_dataset,
    check_data_options,
    dataset_name,
    dataset_spec,
    load_dataset,
    paper_combinations,
)
from brainprop.utils.errors import BrainPropError

pytestmark = pytest.mark.backend_independent


def error_of(name: str, data_dir) -> str:
    with pytest.raises(BrainPropError) as info:
        load_dataset(dataset_spec(name), data_dir)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message
    return message


# --- a dataset argument, resolved once ------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_a_declared_name_is_its_declaration(name):
    spec = dataset_spec(name)
    assert spec is DATASETS[name] and spec.declared and spec.path is None
    assert dataset_name(name) == name


def test_a_path_is_a_data_set_of_its_own_named_after_it(tmp_path):
    (tmp_path / "shapes.npz").write_bytes(b"")
    (tmp_path / "my images").mkdir()
    for text, name in ((str(tmp_path / "shapes.npz"), "shapes"),
                       (str(tmp_path / "my images"), "my-images")):
        spec = dataset_spec(text)
        assert not spec.declared and spec.path == text and spec.name == name
        assert name not in DATASETS and dataset_name(text) == name


def test_unknown_dataset():
    message = error_of("SVHN", None)
    assert "SVHN" in message and "MNIST, CIFAR10, CIFAR100" in message


@pytest.mark.parametrize("text", ["mnist.npz", "some/Cifar10", "TINYIMAGENET/"])
def test_a_path_named_like_a_declared_data_set_is_refused(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    if text.endswith(".npz"):
        (tmp_path / text).write_bytes(b"")
    else:
        (tmp_path / text).mkdir(parents=True)
    with pytest.raises(BrainPropError) as info:
        dataset_spec(text)
    assert "rename" in str(info.value)


# --- the options a data set takes -----------------------------------------------------------


def test_data_dir_with_a_path_is_refused(tmp_path):
    (tmp_path / "shapes.npz").write_bytes(b"")
    text = str(tmp_path / "shapes.npz")
    with pytest.raises(BrainPropError) as info:
        check_data_options(dataset_spec(text), tmp_path, None)
    assert str(info.value) == (f"--data-dir is where a declared data set's files are; {text} is "
                               "a path already: drop --data-dir")
    check_data_options(dataset_spec("MNIST"), tmp_path, None)
    check_data_options(dataset_spec(text), None, None)


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10", "FashionMNIST"])
def test_class_order_only_for_a_data_set_that_names_its_classes(name):
    with pytest.raises(BrainPropError) as info:
        check_data_options(dataset_spec(name), None, "listdir")
    assert str(info.value) == (f"--class-order numbers the classes of TinyImageNet only; "
                               f"drop it for {name}")
    check_data_options(dataset_spec("TinyImageNet"), None, "listdir")


def test_load_refuses_the_options_a_data_set_does_not_take(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(BrainPropError, match="--class-order"):
        load_dataset(dataset_spec("MNIST"), tmp_path, class_order="sorted")


def test_the_paper_combinations_are_the_declared_ones():
    assert paper_combinations() == {
        "MNIST": ("dense", "loccon", "conv"), "CIFAR10": ("loccon", "conv", "deep"),
        "CIFAR100": ("loccon", "conv", "deep"), "TinyImageNet": ("deep",),
    }
    assert "FashionMNIST" in DATASETS and "FashionMNIST" not in paper_combinations()


# --- loading ----------------------------------------------------------------------------------


def test_data_dir_not_a_folder(tmp_path):
    message = error_of("MNIST", tmp_path / "nowhere")
    assert "nowhere" in message and "mnist.npz" in message


def test_dataset_is_frozen(tmp_path):
    write_mnist(tmp_path)
    data = load_dataset(dataset_spec("MNIST"), tmp_path)
    with pytest.raises(AttributeError):
        data.n_classes = 3


def test_download_failure_says_where_to_put_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    message = error_of("MNIST", None)
    assert message.startswith("could not download MNIST")
    assert "mnist.npz" in message and "--data-dir" in message and "name resolution" in message


@pytest.mark.parametrize(
    "name, module, files",
    [("CIFAR10", "cifar10", "cifar-10-python.tar.gz"),
     ("CIFAR100", "cifar100", "cifar-100-python.tar.gz")],
)
def test_download_failure_cifar_multiline_error(monkeypatch, name, module, files):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example\n  -- no route to host")

    monkeypatch.setattr(getattr(keras.datasets, module), "load_data", offline)
    message = error_of(name, None)
    assert files in message and "--data-dir" in message and "no route to host" in message


def test_build_dataset_checks():
    x, y = np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1])
    data = build_dataset("X", (x, y, x, y), n_classes=2, source="src")
    assert data.input_shape == (4, 4, 3) and data.y_train.dtype == np.int32
    bad = [
        ((np.zeros((2, 4, 4), np.uint8), y, x, y), "shape"),
        ((x, y, np.zeros((2, 5, 4, 3), np.uint8), y), "same image shape"),
        ((x[:0], y[:0], x, y), "no images"),
        ((x, y, x, np.array([0, 2])), "0 to 1"),
    ]
    for arrays, words in bad:
        with pytest.raises(BrainPropError, match=words):
            build_dataset("X", arrays, n_classes=2, source="src")
