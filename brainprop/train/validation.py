"""`--validation-split`: stop on held-out training images, report the test set apart.

The paper (and the default here) validates on the test set: the epoch it reports is
chosen by looking at the test set, which flatters the accuracy a little.  With a
validation split, a fixed fraction of the training set is held out for early stopping
and for choosing the best epoch, and the test set is used once, on that epoch's weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np

from brainprop.data.datasets import Dataset
from brainprop.data.mapped import take_rows
from brainprop.train.training import evaluate
from brainprop.utils.errors import BrainPropError

# The split does not follow --seed: every seed of a table sees the same held-out images,
# so seeds differ only in what the paper varied (weights, order, action selection).
SPLIT_SEED = 0


def hold_out(data: Dataset, fraction: float, seed: int = SPLIT_SEED) -> Dataset:
    """`data` with a random `fraction` of its training images moved to a validation split.

    The returned Dataset trains on the rest and validates on the held-out images; its
    test split is untouched.  The same `seed` gives the same split.  Images mapped from a
    cache stay there: both parts are rows of the mapped array, gathered a batch at a time.
    """
    n = len(data.y_train)
    n_held = int(round(n * fraction))
    if not 0 < fraction < 1 or not 0 < n_held < n:
        raise BrainPropError(
            f"--validation-split {fraction} leaves no training or no validation images "
            f"of {n}: give a fraction between 0 and 1, such as 0.1"
        )
    order = np.random.default_rng(seed).permutation(n)
    # Sorted indices keep the gathered copies in the data's own order.
    held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
    return dataclasses.replace(
        data,
        x_train=take_rows(data.x_train, kept),
        y_train=data.y_train[kept],
        x_val=take_rows(data.x_train, held),
        y_val=data.y_train[held],
    )


def best_epoch_test_accuracy(
    model: keras.Model, best_weights_path: str | os.PathLike, data: Dataset, batch_size: int
) -> float | None:
    """Load the best epoch's weights into `model` and return its test-set accuracy.

    None when no best weights were written (no epoch had a finite validation accuracy).
    """
    if not Path(best_weights_path).exists():
        return None
    model.load_weights(best_weights_path)
    return evaluate(model, data, batch_size)
