"""One run of `main.py`: its options (`RunConfig`), training or evaluating it, its
files and summary, and the class order of a weight file.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "RunConfig": "runconfig",
    "Hyperparameters": "runconfig",
    "run_one": "run",
    "run_all": "run",
    "describe": "run",
    "main": "cli",
    "RunFiles": "outputs",
})
