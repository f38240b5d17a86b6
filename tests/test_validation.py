"""--validation-split: a fixed held-out part of the training set, the test set apart."""

import numpy as np
import pytest
from test_cli import write_learnable_mnist

from brainprop.data.datasets import build_dataset
from brainprop.runs.cli import main
from brainprop.train.validation import hold_out
from brainprop.utils.errors import BrainPropError


def _data(n_train=50):
    # Each training image carries its own index in pixel (0, 0), so rows can be traced.
    x = np.zeros((n_train, 4, 4, 1), np.uint8)
    x[:, 0, 0, 0] = np.arange(n_train)
    y = np.arange(n_train) % 3
    return build_dataset("MNIST", (x, y, x[:5], y[:5]), n_classes=3, source="test")


@pytest.mark.backend_independent
def test_hold_out_moves_a_fraction_of_training_images_to_validation():
    data = _data()
    split = hold_out(data, 0.2)
    kept, held = split.x_train[:, 0, 0, 0], split.x_val[:, 0, 0, 0]
    assert (len(kept), len(held)) == (40, 10)
    assert sorted([*kept, *held]) == list(range(50))  # disjoint, nothing lost
    np.testing.assert_array_equal(split.y_train, kept % 3)  # labels follow their images
    np.testing.assert_array_equal(split.y_val, held % 3)
    assert split.x_test is data.x_test  # the test set stays the test set


@pytest.mark.backend_independent
def test_hold_out_is_the_same_split_every_time_and_differs_by_seed():
    data = _data()
    first, again = hold_out(data, 0.3), hold_out(data, 0.3)
    np.testing.assert_array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, hold_out(data, 0.3, seed=5).x_val)


@pytest.mark.backend_independent
@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_hold_out_refuses_a_split_that_leaves_one_side_empty(fraction):
    with pytest.raises(BrainPropError, match="validation-split"):
        hold_out(_data(), fraction)


def test_validation_split_without_save_still_prints_test_accuracy(tmp_path, capsys):
    data = write_learnable_mnist(tmp_path / "data", n_train=200, n_test=60)
    assert main(["MNIST", "dense", "EBP", "--data-dir", str(data), "--epochs", "1",
                 "--validation-split", "0.5"]) == 0
    assert "Test accuracy at the best validation epoch: " in capsys.readouterr().out
    assert not list(tmp_path.glob("*.h5"))
