"""Ctrl-C and SIGTERM: noted at once, acted on at a safe point.

`stop_signals()` is entered first thing by a command, before any heavy import
(NumPy, a backend): from then on SIGINT or SIGTERM sets a flag instead of
raising wherever the interpreter happens to be, where library code (an import,
a `try: ... except BaseException`) could swallow it.  The command looks at the
flag at safe points (`raise_if_stopped`); training stops at the end of the
current batch; the final save completes.  A second signal stops at once
(KeyboardInterrupt), as users expect of a second Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; the command ends with the signal's exit status."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_number, 1)


class SignalFlag:
    """Which stop signal arrived first, if any."""

    def __init__(self):
        self.signal_number: int | None = None

    def raise_if_stopped(self) -> None:
        if self.signal_number is not None:
            raise Stopped(self.signal_number)


_active: SignalFlag | None = None


@contextlib.contextmanager
def stop_signals(message: str = "stopping at the next safe point") -> Iterator[SignalFlag]:
    """Note SIGINT/SIGTERM in a flag for the block; nested blocks share the outer flag."""
    global _active
    if _active is not None:
        yield _active
        return
    flag = SignalFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be set from the main thread
        return

    def handle(signal_number, frame):
        if flag.signal_number is not None:
            raise KeyboardInterrupt
        flag.signal_number = signal_number
        print(f"\n{signal.Signals(signal_number).name}: {message} "
              "(send it again to stop at once)", flush=True)

    previous = {s: signal.signal(s, handle) for s in EXIT_CODES}
    _active = flag
    try:
        yield flag
    finally:
        _active = None
        for s, handler in previous.items():
            signal.signal(s, handler)


def raise_if_stopped() -> None:
    """Stop here (`Stopped`) if a stop signal arrived."""
    if _active is not None:
        _active.raise_if_stopped()
