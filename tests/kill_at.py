"""Run main.py's command line and `kill -9` the process at a chosen moment.

    python tests/kill_at.py MODULE:NAME CALL [before|after] -- ARGS...

The process kills itself with SIGKILL (no handler, no cleanup: as a power cut or
the kernel's OOM killer would) at the CALL-th call of MODULE.NAME (`Class.method`
allowed), before the call starts or after it returns.  With `half`, the call's
first argument (a path) is cut to half its size after the call, then the process
is killed: a file whose write was cut short.
"""

import importlib
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    target, call, when, separator, *argv = sys.argv[1:]
    assert separator == "--" and when in ("before", "after", "half")
    module_name, _, qualified = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = qualified.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        hit = calls["n"] == int(call)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hit:
            if when == "half":
                path = next(Path(a) for a in args if isinstance(a, (str, os.PathLike)))
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, staticmethod(wrapper) if isinstance(
        owner.__dict__.get(name), staticmethod) else wrapper)
    from brainprop.runs.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
