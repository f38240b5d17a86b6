"""How a command of the project was started, so that what it prints names it the same way.

Errors start with the command's name (`brainprop: error: ...`, `main.py: error: ...`,
`python -m brainprop.reproduce: error: ...`), the summary records the command as it was
typed, and a printed command (the one that resumes an interrupted run) is one that runs
when pasted in any folder: the command's own file named by its absolute path, or by
its name where the shell finds that very file on PATH.

No Keras: every command line is read before a backend starts.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

# The folder that holds the `brainprop` package: where `main.py` lives in a checkout.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One command as started: its name, the words typed, the same words for any folder."""

    name: str  # what its errors start with: "brainprop", "main.py", "python -m brainprop.reproduce"
    words: tuple[str, ...]  # as typed: ("brainprop",), ("python", "main.py"), ...
    anywhere: tuple[str, ...]  # the same command, runnable from any folder

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command with arguments `argv`, as typed (the summary's record)."""
        return [*self.words, *argv]

    def command_anywhere(self, argv: Sequence[str]) -> list[str]:
        """The command with arguments `argv`, for any folder (paths in `argv` are the
        caller's to make absolute)."""
        return [*self.anywhere, *argv]


def default_invocation(script: str, module: str) -> Invocation:
    """`python SCRIPT`, for a process not started as the command: its words for any folder
    name the script in the package's folder, or run `module` where the package is
    installed without it."""
    beside = PACKAGE_ROOT / script
    anywhere = ("python", str(beside)) if beside.is_file() else ("python", "-m", module)
    return Invocation(script, ("python", script), anywhere)


def module_invocation(name: str, module: str) -> Invocation:
    """`python -m MODULE`, called `name` in errors: a command for a process not started
    as it."""
    words = ("python", "-m", module)
    return Invocation(name, words, words)


def invoked_as(names: Sequence[str], default: Invocation) -> Invocation:
    """How this process's command was started, when it was started as one of `names`
    (a script such as `main.py`, a console script such as `brainprop`, a module run by
    `python -m`); `default` otherwise (its `main` called from Python, a test, a child
    process of another command)."""
    module = getattr(sys.modules.get("__main__"), "__spec__", None)
    if module is not None:
        if module.name not in names:
            return default
        return _module(module.name)
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name not in names:
        return default
    if started.endswith(".py"):
        python = _on_path(sys.executable)
        return Invocation(Path(started).name, (python, started),
                          (python, str(Path(started).resolve())))
    program = _on_path(started)
    return Invocation(Path(started).name, (program,), (program,))


def _module(name: str) -> Invocation:
    """`python -m NAME`; from any folder with the package's folder on PYTHONPATH when the
    package was found in the current folder (a checkout, not installed)."""
    words = (_on_path(sys.executable), "-m", name)
    anywhere = words
    if Path.cwd().resolve() == PACKAGE_ROOT:
        anywhere = ("env", f"PYTHONPATH={PACKAGE_ROOT}", *words)
    return Invocation(f"{Path(sys.executable).name} -m {name}", words, anywhere)


def _on_path(program: str) -> str:
    """`program`'s name when PATH finds this very file under it, else its absolute path."""
    name = Path(program).name
    found = shutil.which(name)
    try:
        if found and os.path.samefile(found, program):
            return name
    except OSError:
        pass
    return str(Path(program).absolute())
