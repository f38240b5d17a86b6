"""Ctrl-C and SIGTERM: noted at once, acted on at a safe point.

`stop_signals()` is entered first thing by a command, before any heavy import
(NumPy, a backend): from then on SIGINT or SIGTERM sets a flag instead of
raising wherever the interpreter happens to be, where library code (an import,
a `try: ... except BaseException`) could swallow it.  The command looks at the
flag at safe points (`raise_if_stopped`); training stops at the end of the
current batch; the final save completes.  A second signal stops at once
(KeyboardInterrupt), as users expect of a second Ctrl-C.

A process that starts others it may signal starts them inside `held()`: they begin
with both signals blocked (the signal mask survives `exec`), so a signal sent while
they start up waits, pending, until they call `release()` inside `stop_signals()`,
instead of raising in the middle of an import.
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


def held() -> contextlib.AbstractContextManager:
    """Block SIGINT and SIGTERM in this thread for the block: they wait, pending, and
    processes started inside start with them blocked.  A no-op where signals cannot be
    blocked (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        return contextlib.nullcontext()
    return _blocked()


@contextlib.contextmanager
def _blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_CODES)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def block() -> None:
    """Hold SIGINT and SIGTERM from here on, e.g. once the work is done and saved."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_CODES)


def release() -> None:
    """Deliver SIGINT and SIGTERM again, those held since the process started included."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, EXIT_CODES)
