"""Reading the pickles the project cannot avoid, without running code found in them.

A pickle names the functions that rebuild its objects, and loading it calls them:
`pickle.load` on a file from someone else runs whatever they chose.  Two kinds of
pickle reach this project from outside: the CIFAR batches (`--data-dir`) and history
pickles written by the original release or by earlier runs of this project (a runs
folder gathered from several machines).  Both hold only dicts, lists, strings,
bytes, numbers, NumPy arrays and NumPy scalars, so `load` admits exactly the
functions that rebuild those and refuses any other pickle in one line naming the file.
"""

from __future__ import annotations

import _codecs
import importlib
import pickle
from typing import BinaryIO

import numpy as np

from brainprop.utils.errors import BrainPropError


def _numpy_core(module: str, name: str):
    return getattr(importlib.import_module(f"numpy._core.{module}"), name)


# What the files hold, by the (module, name) a pickle writes for it.  NumPy 1.x wrote
# `numpy.core`, NumPy 2 writes `numpy._core`; Python 2 wrote `__builtin__`.
_ADMITTED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # bytes in a protocol 2 pickle written by Python 3
    ("_codecs", "encode"): _codecs.encode,
}
for _package in ("numpy.core", "numpy._core"):
    _ADMITTED[(f"{_package}.multiarray", "_reconstruct")] = _numpy_core("multiarray", "_reconstruct")
    _ADMITTED[(f"{_package}.multiarray", "scalar")] = _numpy_core("multiarray", "scalar")
    _ADMITTED[(f"{_package}.numeric", "_frombuffer")] = _numpy_core("numeric", "_frombuffer")
for _builtins in ("builtins", "__builtin__"):
    for _type in (set, frozenset, complex, bytearray):
        _ADMITTED[(_builtins, _type.__name__)] = _type


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names something a data file of this project never holds."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise RefusedPickle(f"persistent id {pid!r}")


def load(file: BinaryIO, label: str, what: str, **kwargs) -> object:
    """Unpickle `file`, admitting only data types; `label` names it in errors.

    A pickle that names anything else is refused with a BrainPropError (nothing it
    names is called); other failures (truncated, not a pickle) propagate as the
    `pickle` module raises them.  `kwargs` go to the unpickler (`encoding=`).
    """
    try:
        return _DataUnpickler(file, **kwargs).load()
    except RefusedPickle as refused:
        raise BrainPropError(
            f"{label}: refused to load it: it calls {refused}, which {what} never holds "
            "(loading it could run code); use a copy from a source you trust"
        ) from None

