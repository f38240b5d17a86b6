"""The checks every reader makes on what it read: uint8 images of the expected shape,
integer labels in range, and any other failure to read a file as one line."""

import numpy as np
import pytest

from brainprop.data.checks import Read, check_images, check_labels, reading
from brainprop.utils.errors import BrainPropError

pytestmark = pytest.mark.backend_independent


def test_images_of_the_expected_shape_pass_unchanged():
    images = np.zeros((3, 28, 28), np.uint8)
    assert check_images(images, (None, 28, 28), "x") is images


@pytest.mark.parametrize("images, words", [
    ([[0]], "is a list, expected a uint8 array (N, 28, 28)"),
    (np.zeros((3, 28, 27), np.uint8), "has shape (3, 28, 27), expected (N, 28, 28)"),
    (np.zeros((3, 28), np.uint8), "has shape (3, 28), expected (N, 28, 28)"),
    (np.zeros((3, 28, 28), np.float32), "has dtype float32, expected uint8"),
])
def test_images_of_another_kind_are_refused_naming_the_file(images, words):
    with pytest.raises(BrainPropError) as info:
        check_images(images, (None, 28, 28), "mnist.npz: x_train")
    assert str(info.value) == f"mnist.npz: x_train {words}"


def test_labels_become_int32_of_one_dimension():
    labels = check_labels(np.array([[0], [2], [1]], np.uint8), 3, 3, "y")
    assert labels.dtype == np.int32 and labels.tolist() == [0, 2, 1]
    assert check_labels([], 0, 3, "y").dtype == np.int32


@pytest.mark.parametrize("labels, words", [
    (np.zeros((3, 2), int), "has shape (3, 2), expected (N,)"),
    (np.array([0.0, 1.0, 2.0]), "has dtype float64, expected integers"),
    (np.array([0, 1]), "has 2 labels for 3 images"),
    (np.array([0, 1, 3]), "has values from 0 to 3, expected 0 to 2"),
    (np.array([-1, 1, 2]), "has values from -1 to 2, expected 0 to 2"),
    ([[0], [1, 2]], "is not an array of integers"),
])
def test_labels_of_another_kind_are_refused_naming_the_file(labels, words):
    with pytest.raises(BrainPropError) as info:
        check_labels(labels, 3, 3, "labels.idx")
    assert str(info.value).startswith(f"labels.idx {words}")


def test_a_failure_to_read_a_file_is_one_line_that_names_it():
    with pytest.raises(BrainPropError) as info:
        with reading("data_batch_1"):
            raise EOFError("Ran out of input\nwhile reading")
    message = str(info.value)
    assert message.startswith("data_batch_1: cannot read it (EOFError: ") and "\n" not in message
    assert "corrupt, get it again" in message


def test_our_own_refusals_pass_through_reading_unchanged():
    with pytest.raises(BrainPropError, match="^as it was$"):
        with reading("file"):
            raise BrainPropError("as it was")


def test_a_read_names_no_classes_unless_the_data_do():
    splits = (np.zeros((1, 2, 2, 1), np.uint8), np.zeros(1, np.int32)) * 2
    assert Read(splits).classes is None and Read(splits).source is None
