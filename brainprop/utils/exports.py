"""Names imported on first use: each subpackage's public surface (`lazy_exports`), and
the Keras code a Keras-free declaration refers to (`resolve`).

Importing `brainprop.nets` must not start Keras (a run is checked before a backend
starts), so a name is imported from its module only when first used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` giving `names` (name -> module of `package`), and `__all__`."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__, sorted(names)


def resolve(reference: Any) -> Any:
    """What a `"module:name"` reference names, its module imported now; anything else as it
    is.  A declaration that must stay importable before a backend starts (a rule, a kind of
    layer) names the Keras code it needs this way."""
    if not isinstance(reference, str):
        return reference
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
