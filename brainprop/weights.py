"""Weight files: the project's own (Keras 3 `.weights.h5`) and legacy Keras 2 HDF5.

The original release shipped weights written by `model.save_weights("x.h5")`
in TF 2.x: a root attribute `layer_names` lists every layer, and each layer's
group lists its `weight_names`.  Those files load by order: the n-th layer
with weights in the file goes to the n-th layer with weights in our model,
which is why the architectures keep the original's layer order.

Our own files are Keras 3 weight files, loaded by Keras' own `load_weights`.
Either way a file for another architecture or another number of classes is
refused in one line and the model is left untouched.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from brainprop.atomic import write_atomically
from brainprop.errors import BrainPropError

if TYPE_CHECKING:
    import keras

WEIGHTS_SUFFIX = ".weights.h5"


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers that carry weights, in order (the legacy matching order)."""
    return [layer for layer in model.layers if layer.weights]


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write the model's weights to `path` (ending in .weights.h5) atomically."""
    path = Path(path)
    write_atomically(path, lambda partial: model.save_weights(str(partial), overwrite=True))
    return path


def _attribute_list(group: h5py.Group, name: str) -> list[str]:
    # Keras 2 splits long attributes into name0, name1, ... chunks.
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_legacy(root: h5py.Group) -> list[tuple[str, list[np.ndarray]]]:
    if "model_weights" in root:
        root = root["model_weights"]
    groups = []
    for layer_name in _attribute_list(root, "layer_names"):
        names = _attribute_list(root[layer_name], "weight_names")
        if names:
            groups.append((layer_name, [np.asarray(root[layer_name][n]) for n in names]))
    return groups


def _stored_shapes(root: h5py.Group) -> list[tuple[int, ...]]:
    """The shape of every array of a Keras 3 weight file's layers."""
    shapes: list[tuple[int, ...]] = []
    root["layers"].visititems(
        lambda name, item: shapes.append(item.shape) if isinstance(item, h5py.Dataset) else None
    )
    return shapes


def _load_own(model: keras.Model, path: Path, stored: list[tuple[int, ...]]) -> None:
    """Keras' own `load_weights`, its error in one line and the model left as it was."""
    if len(stored) != len(model.weights):
        raise BrainPropError(
            f"{path.name} holds {len(stored)} weight arrays but this architecture has "
            f"{len(model.weights)}: it was saved for another architecture; pick the matching file"
        )
    before = [w.numpy() for w in model.weights]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about each layer it skips
            model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        for weight, value in zip(model.weights, before):
            weight.assign(value)
        raise BrainPropError(_mismatch(model, path, str(error))) from None


# How Keras reports a stored array that does not fit; used only to word the error.  The
# received shape is a tuple, or on PyTorch a `torch.Size([500, 100])`.
_SHAPE_MISMATCH = re.compile(
    r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\)|torch\.Size\(\[[^]]*\]\))\. "
    r"Target variable: <Variable path=([^,/]+)/"
)


def _mismatch(model: keras.Model, path: Path, keras_message: str) -> str:
    found = _SHAPE_MISMATCH.search(keras_message)
    layers = [layer.name for layer in weighted_layers(model)]
    if found is None or found.group(3) not in layers:
        first = keras_message.strip().splitlines()[0] if keras_message.strip() else "no reason"
        return (f"{path.name} does not fit this architecture ({first}); "
                "check the dataset and architecture")
    expected, stored, layer = found.groups()
    if stored.startswith("torch.Size"):
        stored = str(tuple(int(n) for n in re.findall(r"\d+", stored)))
    return (
        f"{path.name} does not fit this architecture: layer {layers.index(layer) + 1} "
        f"({layer}) expects shape {expected}, the file has {stored}; check the dataset "
        "and architecture"
    )


def _check_fits(
    model: keras.Model, groups: list[tuple[str, list[np.ndarray]]], path: Path
) -> None:
    layers = weighted_layers(model)
    if len(groups) != len(layers):
        raise BrainPropError(
            f"{path.name} holds weights for {len(groups)} layers but this "
            f"architecture has {len(layers)}: it was saved for another architecture"
        )
    for index, (layer, (stored_name, arrays)) in enumerate(zip(layers, groups), 1):
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            raise BrainPropError(
                f"{path.name} does not fit this architecture: layer {index} "
                f"({layer.name}, stored as {stored_name}) expects shapes {expected}, "
                f"the file has {found}; check the dataset and architecture"
            )


def check_weight_file(path: str | os.PathLike) -> Path:
    """Refuse a path that is not an existing HDF5 file (no model needed)."""
    path = Path(path)
    if path.is_dir():
        raise BrainPropError(
            f"{path} is a folder, not a weight file: give -l the .weights.h5 (or .h5) file itself"
        )
    if not path.is_file():
        raise BrainPropError(f"weight file {path} does not exist: check the path given to -l")
    if not h5py.is_hdf5(path):
        raise BrainPropError(f"{path} is not an HDF5 weight file (.h5): give a file saved by -s")
    return path


def load_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Load our own or a legacy Keras 2 weight file into `model`, or refuse it in one line
    and leave `model` as it was."""
    path = check_weight_file(path)
    groups = stored = None
    try:
        with h5py.File(path, "r") as root:
            if "layer_names" in root.attrs or "model_weights" in root:
                groups = _read_legacy(root)
            elif "layers" in root:
                stored = _stored_shapes(root)
            else:
                raise BrainPropError(
                    f"{path} is HDF5 but holds no Keras weights: give a file saved by -s"
                )
    except (OSError, KeyError) as error:
        raise BrainPropError(f"{path} could not be read ({error}): the file may be truncated")
    if groups is None:
        _load_own(model, path, stored)
        return
    _check_fits(model, groups, path)
    for layer, (_, arrays) in zip(weighted_layers(model), groups):
        layer.set_weights(arrays)
