"""The paper's four networks (declared in `architectures`, built in `build`), their
layers and the backends' kernels these run on, the per-class accuracy metric, and their
weight files (this project's and the release's legacy Keras 2 files).
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ARCHITECTURES": "architectures",
    "Architecture": "architectures",
    "LAYER_KINDS": "architectures",
    "check_input": "architectures",
    "build_model": "build",
    "compile_model": "build",
    "LocallyConnected2D": "layers",
    "BatchNormalization": "layers",
    "ClassAccuracy": "metrics",
    "load_weights": "weights",
    "check_weight_file": "weights",
})
