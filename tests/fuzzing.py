"""Fuzzing the readers of outside files: damaged copies of a valid input, one per example.

A `Reader` says how to write a valid input into a folder, how the command reads that
folder, and which damage to draw (Hypothesis strategies of functions that damage a
folder).  `check_reader` copies the valid input, damages the copy, reads it as the
command would, and holds the command to its promise for files from elsewhere:

* it reads the input (the damage left it valid), or refuses it: exit status 2 and one
  line on stderr, `PROG: error: ...` (after notes of a line each, `PROG: ...`, on the
  files it left aside), never a traceback;
* a refusal changes no file of the input (nothing written, renamed or deleted);
* no code in a file is ever run (the hostile pickles create a marker file if they are).

Adding a reader is one `Reader` in a test module's list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainprop.utils.errors import EXIT_USER_ERROR, run_command

# Examples per reader and run: what the Reliability table in docs/reliability.md states.
# FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_*.py hunts longer.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 200))

Damage = Callable[[Path], None]  # damages the input in the folder it is given
# Created beside the input folder by hostile files if their code is run.
MARKER = "code-was-run"


@dataclasses.dataclass(frozen=True)
class Reader:
    """One reader of outside files, as a command uses it."""

    name: str  # the test's id
    prog: str  # how the command names itself in its one-line errors
    write_valid: Callable[[Path], None]  # writes a valid input into an empty folder
    read: Callable[[Path], object]  # reads the input in the folder as the command does
    damage: st.SearchStrategy[Damage]
    examples: int = EXAMPLES
    # Files a successful read may write (a cache), relative to the folder.
    may_write: tuple[str, ...] = ()


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under `folder`: its kind, and a file's content hash or a link's target."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir", path.stat().st_mode & 0o777)
            else:
                entries[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(),
                                path.stat().st_mtime_ns)
    return entries


def run_reader(reader: Reader, folder: Path) -> tuple[int, str]:
    """The exit status and stderr of the command reading `folder`."""
    def command() -> int:
        reader.read(folder)
        return 0

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = run_command(reader.prog, command)
    return status, err.getvalue()


def check_reader(reader: Reader) -> None:
    """Hypothesis: `reader.examples` damaged inputs, each read or refused as promised."""
    with tempfile.TemporaryDirectory() as scratch:
        valid = Path(scratch) / "valid"
        valid.mkdir()
        reader.write_valid(valid)

        @settings(max_examples=reader.examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(damage=reader.damage)
        def check(damage: Damage) -> None:
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                folder = Path(tmp) / "input"
                shutil.copytree(valid, folder, symlinks=True)
                damage(folder)
                before = snapshot(folder)
                status, err = run_reader(reader, folder)
                lines = err.strip().splitlines()
                assert "Traceback" not in err, err
                assert not (folder.parent / MARKER).exists(), "a file's code was run"
                if status == 0:
                    after = snapshot(folder)
                    for name in reader.may_write:
                        before.pop(name, None)
                        after.pop(name, None)
                    assert after == before, "a successful read changed the input"
                    return
                assert status == EXIT_USER_ERROR, (status, err)
                # One error line, last; notes before it (a file ignored) are lines of their own.
                assert lines and lines[-1].startswith(f"{reader.prog}: error: "), err
                assert all(line.startswith(f"{reader.prog}: ") and " error: " not in line
                           for line in lines[:-1]), err
                assert snapshot(folder) == before, "a refusal changed the input"

        check()


# --- damage that fits any file ------------------------------------------------------------


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _flip(path: Path, positions: list[float], values: list[int]) -> None:
    data = bytearray(path.read_bytes())
    for position, value in zip(positions, values, strict=False):  # drawn apart
        if data:
            data[int(position * (len(data) - 1))] = value
    path.write_bytes(bytes(data))


def _replace(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def _append(path: Path, content: bytes) -> None:
    path.write_bytes(path.read_bytes() + content)


def _remove(path: Path) -> None:
    path.unlink()


def _folder_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("nowhere"))


def _link_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def byte_damage(*, flips: bool = True) -> st.SearchStrategy[Callable[[Path], None]]:
    """Damage to one file's bytes: cut short, bytes changed, replaced, garbage appended,
    gone, a folder or a broken link in its place.  `flips=False` leaves out changed
    bytes (for formats read by C libraries that are not meant to survive them)."""
    fraction = st.floats(0, 1, exclude_max=True)
    choices = [
        st.builds(lambda f: lambda p: _truncate(p, f), fraction),
        st.builds(lambda c: lambda p: _replace(p, c), st.binary(max_size=64)),
        st.builds(lambda c: lambda p: _append(p, c), st.binary(min_size=1, max_size=64)),
        st.sampled_from([_remove, _folder_instead, _dangling_link, _link_loop]),
    ]
    if flips:
        choices.append(st.builds(
            lambda positions, values: lambda p: _flip(p, positions, values),
            st.lists(fraction, min_size=1, max_size=8), st.lists(st.integers(0, 255), min_size=8,
                                                                  max_size=8)))
    return st.one_of(choices)


def on_file(name: str | st.SearchStrategy[str],
            damage: st.SearchStrategy) -> st.SearchStrategy[Damage]:
    """`damage` applied to the file `name` (relative to the folder), or to one drawn."""
    names = name if isinstance(name, st.SearchStrategy) else st.just(name)
    return st.builds(lambda n, d: lambda folder: d(folder / n), names, damage)


def writes(name: str | st.SearchStrategy[str],
           content: st.SearchStrategy[bytes]) -> st.SearchStrategy[Damage]:
    """The file `name` replaced by drawn bytes."""
    return on_file(name, st.builds(lambda c: lambda p: _replace(p, c), content))


# Paths an input might name to reach outside its folder, or that are no file names.
HOSTILE_NAMES = st.one_of(
    st.sampled_from(["..", ".", "", "/", "/etc/passwd", "../outside", "../../x", "a/b", "a\\b",
                     "\x00", "name\x00.pkl", " ", "~", "$HOME", "\n", "-l", "*", "CON"]),
    st.text(max_size=12),
)

# Any JSON value, and the numbers that break arithmetic.
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(), st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0]),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
