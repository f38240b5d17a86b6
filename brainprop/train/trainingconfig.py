"""How long and how fast one run trains: `TrainingConfig`, with the release's defaults.

No Keras here: the command line resolves a run's hyperparameters before a backend starts.
"""

from __future__ import annotations

import dataclasses

# The original release's stopping rules.
DEFAULT_EPOCHS = 500
DEFAULT_PATIENCE = 45
MIN_DELTA = 0.001


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How long and how fast to train (defaults: the original release)."""

    batch_size: int
    learning_rate: float
    epochs: int = DEFAULT_EPOCHS
    patience: int = DEFAULT_PATIENCE
    min_delta: float = MIN_DELTA
    seed: int = 1
