"""Starting Keras quietly, and seeding it without waking TensorFlow needlessly.

TensorFlow's C++ libraries log while they load, before anything reads
`TF_CPP_MIN_LOG_LEVEL` (oneDNN and CUDA notices, twice, and on a machine
without a GPU an error-level `failed call to cuInit`).  `start()` sets that
level to 3 (fatal errors only) unless the user chose one, and drops the
load-time lines below it (with their continuation lines); every other line
still reaches stderr.  Set
`TF_CPP_MIN_LOG_LEVEL=0` to see them all.

`keras.utils.set_random_seed` imports TensorFlow whenever it is installed, to
seed `tf.data`; under another backend nothing here uses TensorFlow, so
`set_random_seed` seeds it only when it is the backend or already loaded.

`choose()` settles, before Keras starts, which backend it will start: the one
`KERAS_BACKEND` (or Keras' own `keras.json`) names, refused in one line when it
is not one of `BACKENDS` or its package is not installed; with none named,
TensorFlow, Keras' default, or where it is not installed JAX, else PyTorch,
saying so.

`import brainprop` settles the backend the same way (`settle_before_keras`), so that a
script that imports it before Keras starts the backend a command would.

Under PyTorch, `start()` (and `import brainprop` before torch is loaded) also sets
`OMP_WAIT_POLICY=PASSIVE` unless the user chose a policy: PyTorch's OpenMP threads
otherwise spin while they wait for work, and on a CPU shared with other processes the
spinning threads and the working ones take turns on the cores (benchmarks/RESULTS.md,
"PyTorch").  `start()` also has glibc's allocator keep freed memory (`keep_freed_memory`):
PyTorch has no cache of its own on a CPU, and glibc hands each freed tensor of more than
128 KiB back to the system, so that every step's tensors came back as fresh pages, each
written once by the kernel before use (a ReLU of a 32 MiB tensor took 7 ms instead of 2).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from brainprop.utils.errors import BrainPropError

DEFAULT_TF_LOG_LEVEL = "3"

# absl's line before its logging is initialised, and its log lines: "I0000 00:00:...".
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


# The backends this project trains on, and how to install each (CPU; GPU builds: README).
BACKENDS = {
    "tensorflow": "pip install tensorflow",
    "jax": 'pip install "jax[cpu]"',
    "torch": "pip install torch",
}
# With no backend named and TensorFlow, Keras' default, not installed: the first of these.
FALLBACKS = ("jax", "torch")


def installed(name: str) -> bool:
    """Whether the package of backend `name` can be imported (nothing is imported)."""
    return importlib.util.find_spec(name) is not None


def _named() -> tuple[str | None, str]:
    """The backend the user named, and where: `KERAS_BACKEND`, or a `keras.json` naming
    another backend than the `tensorflow` Keras writes there by default."""
    name = os.environ.get("KERAS_BACKEND", "").strip()
    if name:
        return name, "KERAS_BACKEND"
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    config = Path(home) / "keras.json"
    try:
        name = json.loads(config.read_text()).get("backend", "")
    except (OSError, ValueError, AttributeError):
        name = ""
    if name and name != "tensorflow":
        return name, str(config)
    return None, ""


# The backend `choose()` set in KERAS_BACKEND, and the note saying why, for its next call.
_picked: tuple[str, str] | None = None


def choose() -> str | None:
    """Settle which backend Keras will start; a note when it was not the user's choice.

    Raises BrainPropError, in one line, for a backend Keras cannot train on here: one
    this project does not know, one whose package is not installed, or none at all.
    With no backend named and TensorFlow missing, sets `KERAS_BACKEND` to the first
    installed of `FALLBACKS` and returns the note that says so (again on a later call,
    while `KERAS_BACKEND` holds what it set: `import brainprop` settles it first).
    Once Keras has started, its backend stands: nothing to settle.
    """
    global _picked
    if "keras" in sys.modules:
        return None
    if _picked is not None and os.environ.get("KERAS_BACKEND") == _picked[0]:
        return _picked[1]
    chosen, note = pick(*_named(), installed)
    if note is not None:
        os.environ["KERAS_BACKEND"] = chosen
        _picked = chosen, note
    return note


def settle_before_keras() -> None:
    """What `import brainprop` does, so that a script's Keras starts as the command
    line's does: the backend `choose()` settles (with none named and TensorFlow missing,
    JAX, else PyTorch, through `KERAS_BACKEND`), and under PyTorch its threads' wait
    policy (`wait_passively`) while torch is not loaded yet (OpenMP reads it once, when
    torch loads).  A backend that cannot start is left for Keras, or a command, to refuse;
    once Keras has started nothing changes.
    """
    with contextlib.suppress(BrainPropError):
        choose()
    if "torch" not in sys.modules:
        wait_passively()


def wait_passively() -> None:
    """Under PyTorch, `OMP_WAIT_POLICY=PASSIVE` unless the user chose a policy: PyTorch's
    OpenMP threads otherwise spin while they wait for work (the module's docstring)."""
    if _named()[0] == "torch":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pick(named: str | None, where: str,
         available: Callable[[str], bool]) -> tuple[str, str | None]:
    """The backend to start and the note on it (None when it is the one named, or the
    default): `named` (from `where`), else TensorFlow, else the first of `FALLBACKS`
    that is `available`.  BrainPropError when there is none to start."""
    if named is None:
        if available("tensorflow"):
            return "tensorflow", None
        fallback = next((candidate for candidate in FALLBACKS if available(candidate)), None)
        if fallback is None:
            raise BrainPropError(
                "no Keras backend is installed: pip install tensorflow (the default), "
                "or jax or torch with KERAS_BACKEND=jax or KERAS_BACKEND=torch")
        return fallback, (f"Backend {fallback}: KERAS_BACKEND is not set and TensorFlow "
                          "is not installed (set KERAS_BACKEND to choose)")
    source = f"KERAS_BACKEND={named}" if where == "KERAS_BACKEND" else f"{where} names {named!r}"
    if named not in BACKENDS:
        raise BrainPropError(
            f"{source}: not a backend this project trains on; set KERAS_BACKEND to "
            "tensorflow, jax or torch")
    if not available(named):
        others = [other for other in BACKENDS if other != named and available(other)]
        instead = f", or set KERAS_BACKEND={others[0]} (installed)" if others else ""
        raise BrainPropError(
            f"{source}, but the {named} package is not installed: {BACKENDS[named]}{instead}")
    return named, None


def name() -> str:
    """The backend Keras runs, or will start once `choose()` has settled it."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return _named()[0] or "tensorflow"


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Have glibc's allocator keep the memory this process frees, for its next
    allocations: no block of its own mapping (`M_MMAP_MAX` 0), no return of the heap's
    free top to the system (`M_TRIM_THRESHOLD` at its most).  The process then holds
    the most memory it ever used, as TensorFlow's and JAX's allocators do.

    Whether it was done: not off Linux with glibc, nor where the user tunes the
    allocator (a `MALLOC_*` or `GLIBC_TUNABLES` variable, or one preloaded by
    `LD_PRELOAD`).
    """
    if (platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
            or "GLIBC_TUNABLES" in os.environ or os.environ.get("LD_PRELOAD")
            or any(variable.startswith("MALLOC_") for variable in os.environ)):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def start():
    """Import Keras (and so its backend) with TensorFlow's load-time log filtered."""
    choose()
    wait_passively()
    if _named()[0] == "torch":
        keep_freed_memory()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    with _filtered_stderr(already_loaded="tensorflow" in sys.modules):
        # Here, not at the top: this is where the backend starts, once settled above.
        import keras
    return keras


def import_tensorflow():
    """TensorFlow, for what needs it under any backend (TensorBoard's summaries), quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    with _filtered_stderr(already_loaded="tensorflow" in sys.modules):
        # Here, not at the top: TensorFlow is optional under JAX and PyTorch.
        import tensorflow
    return tensorflow


def filter_log(text: str, level: int) -> str:
    """`text` without the absl log messages below `level` (and their continuation lines)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if line.startswith(_ABSL_PREAMBLE):
            dropping = level > 0
        elif match:
            dropping = _SEVERITY[match.group(1)] < level
        # Any other line continues the message before it: kept or dropped with it.
        if not dropping:
            kept.append(line)
    return "".join(kept)


def tensorflow_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def _filtered_stderr(already_loaded: bool) -> Iterator[None]:
    """Hold what is written to file descriptor 2 and pass on the lines above the level."""
    level = tensorflow_log_level()
    if already_loaded or level <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = filter_log(held.read().decode(errors="replace"), level)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed`, without importing TensorFlow for nothing.

    Seeds Python, NumPy, the backend and Keras' global seed generator.
    """
    # Here, not at the top: this module settles the backend before Keras starts.
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    # Here, not at the top: compat imports Keras.
    from brainprop.utils.compat import seed_without_tensorflow

    seed_without_tensorflow(seed)
