"""What `pip install .` installs besides the package: requirements.txt, whose backend is
TensorFlow; with `BRAINPROP_BACKEND=jax` or `BRAINPROP_BACKEND=torch`, the same with that
backend in TensorFlow's place (docs/backends.md, "Installing").

pip builds a folder afresh each time (it caches no wheel built from a local folder), so
the variable decides every install from this folder; a wheel built once (`pip wheel .`)
keeps the dependencies of the variable it was built under.
"""

import os
from pathlib import Path

from setuptools import setup

# The package each backend installs; TensorFlow's is the line of requirements.txt.
BACKEND_PACKAGES = {"tensorflow": None, "jax": "jax", "torch": "torch"}
TENSORFLOW = "tensorflow"


def requirements() -> list[str]:
    """The requirement lines of requirements.txt (comments and blank lines left out)."""
    text = (Path(__file__).parent / "requirements.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def dependencies(backend: str) -> list[str]:
    """requirements.txt for `backend`: as it is for TensorFlow, else without TensorFlow
    and with the backend's package."""
    if backend not in BACKEND_PACKAGES:
        raise SystemExit(f"BRAINPROP_BACKEND={backend}: not a backend this project trains on; "
                         "set it to jax or torch, or leave it unset for TensorFlow")
    if backend == TENSORFLOW:
        return requirements()
    kept = [line for line in requirements() if not line.startswith(TENSORFLOW)]
    return [*kept, BACKEND_PACKAGES[backend]]


setup(install_requires=dependencies(os.environ.get("BRAINPROP_BACKEND", "").strip() or TENSORFLOW))
