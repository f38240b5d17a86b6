"""The input pipeline: uint8 images in memory or memory-mapped, scaled to [0, 1] one
batch at a time.

`ImageBatches` holds the order of every epoch; `fit_input` is what `fit` and
`evaluate` iterate: the batches themselves (on JAX), under TensorFlow the same
batches through a `tf.data` pipeline, under PyTorch through `brainprop.utils.compat.OnePassAtATime`
(see there why).
"""

from __future__ import annotations

import keras
import numpy as np

from brainprop.data.mapped import release_pages
from brainprop.utils.backend import import_tensorflow
from brainprop.utils.compat import OnePassAtATime
from brainprop.utils.errors import BrainPropError

# Batches made ahead of the step that takes them: one in use, one ready.
PREFETCH_BATCHES = 2


class ImageBatches(keras.utils.PyDataset):
    """Batches of (images scaled to float32 [0,1], int32 labels) from uint8 arrays.

    Each batch is scaled when it is indexed; no float copy of all images is made.  Images
    mapped from a cache (`brainprop.data.mapped`) are read a batch at a time: the pages a
    batch was gathered from are released once it is copied out, so resident memory holds
    the batches in flight, not the data set.

    The last batch may be smaller than `batch_size`.  With `shuffle`, the order of each
    epoch is the permutation drawn from `np.random.default_rng((seed, epoch))`, where
    `epoch` counts the completed epochs (`on_epoch_end` adds one; set it to continue a
    resumed run's sequence).  Without `shuffle` the order is the natural one.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(batch_size) != batch_size or batch_size < 1:
            raise BrainPropError(f"batch size must be a positive integer, got {batch_size}")
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self._epoch = 0
        self._order: np.ndarray | None = None

    @property
    def epoch(self) -> int:
        """The number of completed epochs; it picks the order of the current one."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = int(value)
        self._order = None

    def order(self) -> np.ndarray | None:
        """The current epoch's example order, or None for the natural order."""
        if self.shuffle and self._order is None:
            rng = np.random.default_rng((self.seed, self._epoch))
            self._order = rng.permutation(len(self.images))
        return self._order if self.shuffle else None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def rows(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of the current epoch as stored: (uint8 images, int32 labels)."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        order = self.order()
        if order is not None:
            rows = order[rows]
        images = self.images[rows]
        release_pages(self.images)
        return images, self.labels[rows]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.rows(index)
        return images.astype(np.float32) / 255.0, labels

    def on_epoch_end(self) -> None:
        self.epoch = self._epoch + 1


def fit_input(batches: ImageBatches):
    """What `fit`, `evaluate` and `predict` should iterate to see `batches`, epoch after epoch.

    Under TensorFlow, Keras feeds a `PyDataset` through `tf.data.Dataset.from_generator`,
    a Python generator run by a `tf.data` thread: on a 2-core CPU an MNIST dense epoch
    took 15% more CPU time that way than through this pipeline (benchmarks/RESULTS.md,
    "Whole epochs against the release").  Here Python only picks each batch's rows
    (`ImageBatches.rows`, the same order); `tf.data` scales them to float32 (the same
    values: x / 255 in float32) and keeps `PREFETCH_BATCHES` ready, its autotuner off.

    Each pass over the pipeline is the epoch after the one before, the first pass the
    epoch after `batches.epoch`: what `fit` makes of a `PyDataset`, which it advances once
    (`on_epoch_end`) after reading a batch to build the model, and at the end of every
    epoch.  A run's batches, and so its history, are the same on every backend and
    whichever way they are fed (tests/test_pipeline.py).  Under PyTorch: `batches` through
    `brainprop.utils.compat.OnePassAtATime`; on JAX: `batches`.
    """
    if keras.backend.backend() == "torch":
        return OnePassAtATime(batches)
    if keras.backend.backend() != "tensorflow":
        return batches
    tf = import_tensorflow()

    def start_pass():
        batches.on_epoch_end()
        return np.int64(len(batches))

    shape, stored = tuple(batches.images.shape[1:]), tf.as_dtype(batches.images.dtype)

    def scale(images, labels):
        images = tf.ensure_shape(images, (None, *shape))
        return tf.cast(images, tf.float32) / 255.0, tf.ensure_shape(labels, (None,))

    passes = tf.data.Dataset.from_tensors(0).map(
        lambda _: tf.numpy_function(start_pass, [], tf.int64, stateful=True))
    dataset = passes.flat_map(tf.data.Dataset.range).map(
        lambda index: tf.numpy_function(batches.rows, [index], (stored, tf.int32),
                                         stateful=True))
    dataset = dataset.map(scale).apply(tf.data.experimental.assert_cardinality(len(batches)))
    # Nothing here for tf.data's autotuner to tune, and it stalls: with it on, on 2 cores,
    # the first compiled call of every other CIFAR10 conv epoch waited about 1 s with
    # the cores idle (1.44 s epochs became 2.55 s); with it off, none did.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)
