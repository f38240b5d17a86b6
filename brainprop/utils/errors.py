"""Mistakes a user can fix, and how every command of the project reports them.

`Parser` and `run_command` are shared by `main.py`, `tinyimagenet.py`,
`python -m brainprop.report` and `python -m brainprop.reproduce`: the same
refusal of abbreviated options, one line on stderr for any mistake, and the
same exit statuses.  `one_line` makes any message (an exception, a log's tail,
a tool's stderr) fit such a line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

# What every command line of the project returns after a one-line error.
EXIT_USER_ERROR = 2
# What a shell reports for a process stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class BrainPropError(Exception):
    """A problem caused by the user's input (arguments, files, data).

    The CLI prints its message as a single line and exits non-zero, so the
    message must say what is wrong and what to do about it.
    """


def one_line(message: object, limit: int = 200, *, last: bool = False) -> str:
    """`message` (an exception or text) as one line of at most `limit` characters.

    Runs of whitespace, line breaks included, become single spaces; longer text is
    cut and ends in "...".  `last` keeps only the last non-empty line, where a log or
    a tool's stderr puts the error.  Empty text gives "", an exception without a
    message its type's name.
    """
    text = str(message)
    if last:
        text = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    flat = " ".join(text.split())
    if not flat and isinstance(message, BaseException):
        flat = type(message).__name__
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def plural(count: int, noun: str) -> str:
    """`1 seed`, `2 seeds`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Parser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviated option and errs in one line."""

    def __init__(self, *args, **kwargs):
        # A typo must not silently become another option.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        # One line, no usage block: the full usage is one --help away.
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def run_command(name: str, command: Callable[[], int]) -> int:
    """`command()`'s exit status, or a one-line error for a BrainPropError or a Ctrl-C."""
    try:
        return command()
    except BrainPropError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as stop:  # outside training, which stops on its own
        print(f"{name}: interrupted", file=sys.stderr)
        # SIGTERM noted by brainprop.utils.signals ends as a shell expects (143).
        return getattr(stop, "exit_code", EXIT_INTERRUPTED)
