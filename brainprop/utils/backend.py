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
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

DEFAULT_TF_LOG_LEVEL = "3"

# absl's line before its logging is initialised, and its log lines: "I0000 00:00:...".
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def start():
    """Import Keras (and so its backend) with TensorFlow's load-time log filtered."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    with _filtered_stderr(already_loaded="tensorflow" in sys.modules):
        import keras
    return keras


def import_tensorflow():
    """TensorFlow, for what needs it under any backend (TensorBoard's summaries), quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    with _filtered_stderr(already_loaded="tensorflow" in sys.modules):
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
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    from brainprop.utils.compat import seed_without_tensorflow

    seed_without_tensorflow(seed)
