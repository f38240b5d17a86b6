"""The learning-rate schedule of the release: halve every 100 epochs.

No Keras here: the command line's help and the run summary describe it before a
backend starts; training applies it through Keras' `LearningRateScheduler`.
"""

LR_HALVING_EPOCHS = 100
LR_SCHEDULE = f"learning_rate * 0.5 ** (epoch // {LR_HALVING_EPOCHS})"


def learning_rate_at(epoch: int, initial: float) -> float:
    """Learning rate for a 0-based `epoch`: LR_SCHEDULE with `learning_rate=initial`."""
    return initial * 0.5 ** (epoch // LR_HALVING_EPOCHS)
