"""The paper"s four networks, their layers, the per-class accuracy metric, and
their weight files (this project"s and the release"s legacy Keras 2 files).
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ARCHITECTURES": "architectures",
    "build_model": "architectures",
    "compile_model": "architectures",
    "LocallyConnected2D": "layers",
    "BatchNormalization": "layers",
    "ClassAccuracy": "metrics",
    "load_weights": "weights",
    "check_weight_file": "weights",
})
