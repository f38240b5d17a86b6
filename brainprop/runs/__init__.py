"""One run of `main.py`: its options (`RunConfig`), the run they name (`RunPlan`),
training or evaluating it, its files and summary, and the class order of a weight file.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "RunConfig": "runconfig",
    "RunPlan": "plan",
    "Hyperparameters": "plan",
    "plan_run": "plan",
    "run_one": "run",
    "run_all": "run",
    "describe": "run",
    "main": "cli",
    "RunFiles": "outputs",
})
