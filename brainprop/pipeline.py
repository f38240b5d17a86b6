"""The input pipeline: uint8 images in memory, scaled to [0, 1] one batch at a time."""

from __future__ import annotations

import keras
import numpy as np

from brainprop.errors import BrainPropError


class ImageBatches(keras.utils.PyDataset):
    """Batches of (images scaled to float32 [0,1], int32 labels) from uint8 arrays.

    Each batch is scaled when it is indexed; no float copy of all images is made.

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

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        order = self.order()
        if order is not None:
            rows = order[rows]
        return self.images[rows].astype(np.float32) / 255.0, self.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch = self._epoch + 1
