"""Folders that fail as real disks do: full, or read-only (also for root)."""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(path: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted at `path` (needs root: skips the test otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    mount = shutil.which("mount")
    result = subprocess.run([mount or "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True, text=True) if mount and os.geteuid() == 0 else None
    if result is None or result.returncode != 0:
        pytest.skip("cannot mount a size-limited filesystem here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_folder(path: Path, fill=None):
    """`path` as a folder nobody can write into (permissions, or for root a read-only
    mount), after `fill(path)` put files there."""
    if os.geteuid() != 0:
        path.mkdir()
        if fill:
            fill(path)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with small_filesystem(path, "4m"):
        if fill:
            fill(path)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
