"""Each subpackage names its public surface without importing it: `lazy_exports`.

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
