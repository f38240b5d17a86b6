"""Hostile files for tests: pickles that run code when loaded (a harmless payload)."""

from pathlib import Path


class Payload:
    """Unpickles to `value` after creating `marker` (as `eval` of a command would)."""

    def __init__(self, marker: Path, value=None):
        self.marker, self.value = marker, value

    def __reduce__(self):
        code = f"__import__('pathlib').Path({str(self.marker)!r}).touch() or {self.value!r}"
        return (eval, (code,))
