"""The data sets: each declared once, a dataset argument resolved once (`dataset_spec`),
reading the standard files (or downloading them), your own images, Tiny ImageNet's
folder and its cache, and the batches fed to `fit`.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "DATASETS": "datasets",
    "Dataset": "datasets",
    "DatasetSpec": "datasets",
    "register_dataset": "datasets",
    "dataset_spec": "datasets",
    "dataset_name": "datasets",
    "check_data_options": "datasets",
    "load_dataset": "datasets",
    "paper_combinations": "datasets",
    "Read": "checks",
    "ImageBatches": "pipeline",
    "fit_input": "pipeline",
    "read_tinyimagenet": "tinyimagenet",
})
