"""How long and how fast one run trains: `TrainingConfig`, with the release's defaults.

No Keras here: the command line resolves a run's hyperparameters before a backend starts.
"""

from __future__ import annotations

import dataclasses

# The original release's stopping rules.
DEFAULT_EPOCHS = 500
DEFAULT_PATIENCE = 45
MIN_DELTA = 0.001

# How BatchNormalization's moving statistics, which evaluation uses, follow training:
# "release": Keras' momentum 0.99 (the release's), each step moving them 1% of the way.
# "epoch": a momentum in step with the epoch's length, so that after one epoch the
# starting statistics (mean 0, variance 1) weigh at most 0.1%, and evaluation reflects the
# network it evaluates from the first epoch on however small the data set.
BATCHNORM_STATISTICS = ("release", "epoch")
RELEASE_MOMENTUM = 0.99
# What is left of the starting statistics after one epoch, with "epoch".  The paper's
# initialisation gives the first layers' activations a variance near 0.0004 to 0.001: with
# 1% of the starting variance left, the first epoch evaluated with variances some 28 times
# too large (validation 0.27 against training 0.42 on 2,000 photos, JAX); with 0.1%, it
# validated at 0.50 to 0.60 on every backend (docs/backends.md).
EPOCH_RESIDUE = 0.001


def epoch_momentum(steps_per_epoch: int) -> float:
    """The momentum that leaves `EPOCH_RESIDUE` of the starting statistics after an epoch
    of `steps_per_epoch` steps, never above the release's: 0.806 for 32 steps, 0.649 for
    16, 0.985 for 469 (60,000 images in batches of 128), 0.99 from 688 steps on."""
    return min(RELEASE_MOMENTUM, EPOCH_RESIDUE ** (1.0 / max(steps_per_epoch, 1)))


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How long and how fast to train (defaults: the original release)."""

    batch_size: int
    learning_rate: float
    epochs: int = DEFAULT_EPOCHS
    patience: int = DEFAULT_PATIENCE
    min_delta: float = MIN_DELTA
    seed: int = 1
    batchnorm_statistics: str = "release"  # one of BATCHNORM_STATISTICS

    def __post_init__(self) -> None:
        if self.batchnorm_statistics not in BATCHNORM_STATISTICS:
            raise ValueError(f"batchnorm_statistics must be one of {BATCHNORM_STATISTICS}; "
                             f"got {self.batchnorm_statistics!r}")

    def batchnorm_momentum(self, steps_per_epoch: int) -> float | None:
        """The momentum of every BatchNormalization layer for epochs of `steps_per_epoch`
        steps; None: the layers' own (Keras' 0.99, the release's), left untouched."""
        if self.batchnorm_statistics == "release":
            return None
        return epoch_momentum(steps_per_epoch)
