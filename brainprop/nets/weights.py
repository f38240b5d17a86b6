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

import itertools
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from brainprop.utils.errors import BrainPropError, one_line

if TYPE_CHECKING:
    import keras

WEIGHTS_SUFFIX = ".weights.h5"


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers that carry weights, in order (the legacy matching order); a
    feedback pathway's layers (`brainprop.model.pathway`) are not among them: the legacy
    files have no feedback weights, which keep their starting values."""
    return [layer for layer in model.layers
            if layer.weights and not getattr(layer, "feeds_back", False)]


def _not_weights(path: Path, problem: str) -> BrainPropError:
    return BrainPropError(f"{path} is not a Keras weight file ({problem}): give a file saved "
                          "by -s or one of the original release's .h5 files")


def _attribute_list(node: h5py.HLObject, name: str, path: Path) -> list[str]:
    """The names a Keras 2 attribute lists (split into name0, name1, ... when long)."""
    if name in node.attrs:
        chunks = [name]
    else:
        chunks = list(itertools.takewhile(lambda chunk: chunk in node.attrs,
                                          (f"{name}{i}" for i in itertools.count())))
    names = []
    for chunk in chunks:
        values = node.attrs[chunk]
        if not isinstance(values, np.ndarray) or values.ndim != 1:
            raise _not_weights(path, f"its {name} attribute is not a list of names")
        for value in values:
            if isinstance(value, bytes):
                value = value.decode("utf8")
            if not isinstance(value, str):
                raise _not_weights(path, f"its {name} attribute is not a list of names")
            names.append(value)
    return names


def _read_legacy(root: h5py.Group, path: Path) -> list[tuple[str, list[np.ndarray]]]:
    if "model_weights" in root:
        root = root["model_weights"]
        if not isinstance(root, h5py.Group):
            raise _not_weights(path, "its model_weights entry is not a group")
    groups = []
    for layer_name in _attribute_list(root, "layer_names", path):
        layer = root.get(layer_name)
        if not isinstance(layer, h5py.Group):
            raise _not_weights(path, f"layer {layer_name!r} of its layer_names is not a group")
        arrays = []
        for name in _attribute_list(layer, "weight_names", path):
            array = layer.get(name)
            if not isinstance(array, h5py.Dataset):
                raise _not_weights(path, f"weight {name!r} of layer {layer_name!r} is not an "
                                   "array")
            arrays.append(np.asarray(array))
        if arrays:
            groups.append((layer_name, arrays))
    return groups


def _stored_shapes(root: h5py.Group, path: Path) -> list[tuple[int, ...]]:
    """The shape of every array of a Keras 3 weight file's layers."""
    layers = root["layers"]
    if not isinstance(layers, h5py.Group):
        raise _not_weights(path, "its layers entry is not a group")
    shapes: list[tuple[int, ...]] = []
    layers.visititems(
        lambda name, item: shapes.append(item.shape) if isinstance(item, h5py.Dataset) else None
    )
    return shapes


def _load_own(model: keras.Model, path: Path, stored: list[tuple[int, ...]]) -> None:
    """Keras' own `load_weights`, its error in one line and the model left as it was."""
    if len(stored) != len(model.weights):
        raise BrainPropError(
            f"{path.name} holds {len(stored)} weight arrays but this architecture has "
            f"{len(model.weights)}: it was saved for another architecture or --feedback; "
            "pick the matching file, and the --feedback it was trained with"
        )
    before = [w.numpy() for w in model.weights]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about each layer it skips
            model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        for weight, value in zip(model.weights, before, strict=True):
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
        return (f"{path.name} does not fit this architecture "
                f"({one_line(keras_message) or 'no reason'}); "
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
    for index, (layer, (stored_name, arrays)) in enumerate(zip(layers, groups, strict=True), 1):
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            raise BrainPropError(
                f"{path.name} does not fit this architecture: layer {index} "
                f"({layer.name}, stored as {stored_name}) expects shapes {expected}, "
                f"the file has {found}; check the dataset and architecture"
            )
        kinds = [a.dtype for a in arrays if a.dtype.kind not in "biuf"]
        if kinds:
            raise _not_weights(path, f"layer {index} ({stored_name}) holds {kinds[0]} values, "
                               "not numbers")


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
                groups = _read_legacy(root, path)
            elif "layers" in root:
                stored = _stored_shapes(root, path)
            else:
                raise BrainPropError(
                    f"{path} is HDF5 but holds no Keras weights: give a file saved by -s"
                )
    # h5py's, on a damaged file (RuntimeError: a loop of links)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise BrainPropError(
            f"{path} could not be read ({type(error).__name__}: {one_line(error)}): the file "
            "may be truncated or damaged"
        ) from None
    if groups is None:
        _load_own(model, path, stored)
        return
    _check_fits(model, groups, path)
    for layer, (_, arrays) in zip(weighted_layers(model), groups, strict=True):
        layer.set_weights(arrays)
