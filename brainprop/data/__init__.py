"""The data sets: reading the standard files (or downloading them), Tiny ImageNet"s
folder and its cache, and the batches fed to `fit`.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Dataset": "datasets",
    "DatasetSpec": "datasets",
    "register_dataset": "datasets",
    "load_dataset": "datasets",
    "dataset_spec": "datasets",
    "check_data_options": "datasets",
    "ImageBatches": "pipeline",
    "fit_input": "pipeline",
    "read_tinyimagenet": "tinyimagenet",
})
