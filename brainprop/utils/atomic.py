"""Files appear whole or not at all.

Every file the project writes is first written under `partial_path(path)`, the
hidden name `.partial.<name>` in the same folder (the same file system, so the
rename is atomic; the name keeps its suffix, from which Keras, NumPy and
matplotlib read the format), flushed to disk, then renamed onto `path`.  A
crash leaves at most a hidden `.partial.*` file, never a truncated file under
a real name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

PREFIX = ".partial."


def partial_path(path: str | os.PathLike) -> Path:
    """Where a file (or folder) bound for `path` is written before it is renamed."""
    path = Path(path)
    return path.with_name(PREFIX + path.name)


def publish(partial: Path, path: str | os.PathLike) -> None:
    """Flush the finished file `partial` to disk and rename it onto `path`."""
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(partial)` to write the whole file under its partial name, then publish it.

    An OSError that names no file (as a write to a full disk) is raised naming `path`.
    """
    partial = partial_path(path)
    try:
        write(partial)
        publish(partial, path)
    except OSError as error:
        if error.filename is None:  # a write to an open file (a full disk) names none
            error.filename = str(path)
        raise
    finally:
        partial.unlink(missing_ok=True)
