"""The batch pipeline: scaling per batch, reproducible shuffling, resumable order."""

import keras
import numpy as np
import pytest

from brainprop.errors import BrainPropError
from brainprop.pipeline import ImageBatches


def numbered(n: int):
    """Images whose first pixel is their index, labels equal to their index."""
    x = np.zeros((n, 2, 2, 1), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    x[:, 1, 1, 0] = 255
    return x, np.arange(n)


def epoch_indices(batches: ImageBatches) -> list[int]:
    return [int(i) for b in range(len(batches)) for i in batches[b][1]]


def test_batches_values_and_partial_last_batch():
    x, y = numbered(10)
    batches = ImageBatches(x, y, 4)
    assert len(batches) == 3 and batches.images is x
    sizes = []
    for index in range(len(batches)):
        xb, yb = batches[index]
        assert xb.dtype == np.float32 and yb.dtype == np.int32
        assert xb.min() >= 0.0 and xb.max() == 1.0
        np.testing.assert_allclose(xb[:, 0, 0, 0] * 255, yb, atol=1e-4)
        sizes.append(len(yb))
    assert sizes == [4, 4, 2]
    with pytest.raises(IndexError):
        batches[3]
    assert x.dtype == np.uint8  # the source is untouched


@pytest.mark.parametrize("n, batch_size, expected", [(8, 4, 2), (9, 4, 3), (1, 5, 1), (0, 5, 0)])
def test_batches_len(n, batch_size, expected):
    x, y = numbered(n)
    assert len(ImageBatches(x, y, batch_size)) == expected


def test_no_shuffle_keeps_order():
    x, y = numbered(7)
    batches = ImageBatches(x, y, 3)
    assert epoch_indices(batches) == list(range(7))
    batches.on_epoch_end()
    assert epoch_indices(batches) == list(range(7))


def test_shuffle_each_epoch_a_permutation():
    x, y = numbered(50)
    batches = ImageBatches(x, y, 8, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        assert batches.epoch == epoch
        order = epoch_indices(batches)
        assert sorted(order) == list(range(50))
        assert order == np.random.default_rng((3, epoch)).permutation(50).tolist()
        orders.append(order)
        batches.on_epoch_end()
    assert orders[0] != orders[1] != orders[2] != orders[0]
    # the images follow their labels
    xb, yb = batches[1]
    np.testing.assert_allclose(xb[:, 0, 0, 0] * 255, yb, atol=1e-4)


def test_shuffle_reproducible_and_resumable():
    x, y = numbered(30)
    first = ImageBatches(x, y, 7, shuffle=True, seed=5)
    for _ in range(3):
        first.on_epoch_end()
    resumed = ImageBatches(x, y, 7, shuffle=True, seed=5)
    resumed.epoch = 3
    assert epoch_indices(first) == epoch_indices(resumed)
    other_seed = ImageBatches(x, y, 7, shuffle=True, seed=6)
    other_seed.epoch = 3
    assert epoch_indices(first) != epoch_indices(other_seed)


def test_batches_reject_bad_arguments():
    x, y = numbered(4)
    with pytest.raises(BrainPropError):
        ImageBatches(x, y, 0)
    with pytest.raises(ValueError):
        ImageBatches(x, y[:3], 2)


def test_batches_feed_keras_fit():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 4, 4, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 12)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = ImageBatches(x, y, 5, shuffle=True)
    history = model.fit(batches, epochs=2, verbose=0, shuffle=False,
                        validation_data=ImageBatches(x, y, 5))
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert batches.epoch >= 2


