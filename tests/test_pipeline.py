"""The batch pipeline: scaling per batch, reproducible shuffling, resumable order."""

from pathlib import Path

import keras
import numpy as np
import pytest

from brainprop.data.mapped import load_mapped
from brainprop.data.pipeline import ImageBatches, fit_input
from brainprop.utils.compat import OnePassAtATime, run_steps_per_execution_on_torch
from brainprop.utils.errors import BrainPropError


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


def passes_of(dataset, count: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`count` passes over what `fit_input` gave, as fit makes them: a new iterator each."""
    return [[tuple(keras.ops.convert_to_numpy(part) for part in batch) for batch in dataset]
            for _ in range(count)]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a tf.data pipeline")
@pytest.mark.parametrize("shuffle, start_epoch", [(True, 0), (True, 3), (False, 0)])
def test_fit_input_gives_the_batches_bit_for_bit_epoch_after_epoch(shuffle, start_epoch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (23, 3, 3, 2), dtype=np.uint8)
    y = rng.integers(0, 5, 23)
    source = ImageBatches(x, y, 5, shuffle=shuffle, seed=4)  # 5 batches, the last of 3
    source.epoch = start_epoch  # a resumed run starts in the middle of the sequence
    fed = fit_input(source)
    expected = ImageBatches(x, y, 5, shuffle=shuffle, seed=4)
    expected.epoch = start_epoch
    for epoch_batches in passes_of(fed, 3):
        expected.on_epoch_end()  # as fit advances a PyDataset: before its first epoch too
        assert len(epoch_batches) == len(expected) == 5
        for index, (images, labels) in enumerate(epoch_batches):
            want_images, want_labels = expected[index]
            assert images.dtype == np.float32 and labels.dtype == np.int32
            np.testing.assert_array_equal(images, want_images)
            np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="TensorFlow and PyTorch have their own")
def test_fit_input_is_the_batches_themselves_on_jax():
    batches = ImageBatches(*numbered(4), 2)
    assert fit_input(batches) is batches


def test_an_epoch_ends_once_per_pass_on_torch_the_first_end_before_any_batch_too():
    batches = ImageBatches(*numbered(4), 2, shuffle=True)
    passes = OnePassAtATime(batches)
    passes.on_epoch_end()  # fit's end before the first epoch, nothing read
    passes.on_epoch_end()
    assert batches.epoch == 1
    passes[0], passes[1]
    passes.on_epoch_end()
    passes.on_epoch_end()  # a second end of the same pass
    assert batches.epoch == 2
    np.testing.assert_array_equal(passes[1][1], batches[1][1])


def test_scaling_is_that_of_numpy_for_every_byte():
    x = np.arange(256, dtype=np.uint8).reshape(256, 1, 1, 1)
    [[(images, _)]] = passes_of(fit_input(ImageBatches(x, np.zeros(256), 256)), 1)
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.arange(256, dtype=np.float32) / 255.0)


def _train(feed, steps_per_execution) -> tuple[dict, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 40)
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)
    run_steps_per_execution_on_torch(model)
    history = model.fit(feed(ImageBatches(x, y, 6, shuffle=True, seed=7)), epochs=3,
                        validation_data=feed(ImageBatches(x[:13], y[:13], 6)),
                        shuffle=False, verbose=0).history
    return history, [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_training_through_fit_input_is_training_on_the_batches():
    """Same steps in the same order as Keras' own loop of one batch per call: same history
    and weights, bit for bit (7 batches, 2 per call: the last call of each epoch has one)."""
    direct_history, direct_weights = _train(lambda batches: batches, 1)
    history, weights = _train(fit_input, 2)
    assert history == direct_history
    for got, want in zip(weights, direct_weights, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a tf.data pipeline")
def test_the_pipeline_runs_without_the_autotuner_which_stalls_epochs():
    fed = fit_input(ImageBatches(*numbered(6), 2, shuffle=True))
    assert fed.options().autotune.enabled is False


def mapping_rss_kb(path) -> int:
    """Resident kB of this process's mappings of the file `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's first line
            inside = fields[-1] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.backend_independent
@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux's /proc only")
def test_mapped_images_stay_off_resident_memory_batch_after_batch(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8)  # 6 MB
    np.savez(tmp_path / "cache.npz", x=images)
    mapped = load_mapped(tmp_path / "cache.npz")["x"]
    labels = np.arange(2000) % 10
    batches, in_memory = (ImageBatches(mapped, labels, 100, shuffle=True, seed=3),
                          ImageBatches(images, labels, 100, shuffle=True, seed=3))
    largest = 0
    for index in range(len(batches)):
        for got, expected in zip(batches.rows(index), in_memory.rows(index), strict=True):
            np.testing.assert_array_equal(got, expected)
        largest = max(largest, mapping_rss_kb(tmp_path / "cache.npz"))
    np.testing.assert_array_equal(batches[3][0], in_memory[3][0])
    # A batch of 100 random rows touches at most 200 pages (800 kB); all of them: 6,000 kB.
    assert largest <= 1000
