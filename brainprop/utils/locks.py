"""Exclusive locks that the operating system releases when their process dies.

`fcntl.flock` on an open file: no stale lock survives a crash or `kill -9`, so
nobody ever has to delete a lock file by hand.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the checks that rely on them are skipped
    fcntl = None


class LockHeld(Exception):
    """Another process holds the lock; `pid` is its process id when it recorded one."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is locked by process {pid}")
        self.path, self.pid = path, pid


def _read_pid(file: BinaryIO) -> int | None:
    file.seek(0)
    text = file.read(32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, record_pid: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the `with` block, or raise LockHeld at once.

    With `record_pid`, `path` is created if needed and the holder writes its process
    id into it, for the message another process shows; without, `path` must exist
    and is only opened for reading (it may be a data file in a read-only folder).
    """
    path = Path(path)
    file = open(path, "a+b" if record_pid else "rb")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(path, _read_pid(file)) from None
        if record_pid:
            file.seek(0)
            file.truncate()
            file.write(f"{os.getpid()}\n".encode())
            file.flush()
        yield
    finally:
        file.close()  # releases the lock
