"""Training one network: `fit` with the release's stopping rules and schedule, what
is printed per epoch, the per-epoch backup that resuming reads, validation splits.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "TrainingConfig": "trainingconfig",
    "train": "training",
    "evaluate": "training",
    "RunBackup": "resume",
    "hold_out": "validation",
})
