"""A child of `brainprop.runs.jobs` that Ctrl-Cs its parent at a chosen moment.

    python tests/ctrl_c_parent_at.py MODULE:NAME -- CORES ARGS...

Runs the child as `python -m brainprop.runs.jobs CORES ARGS...` does; once MODULE.NAME
has returned the first time, it sends SIGINT to its parent (the `run_locally` that
started it, which passes the signal on to its children) and waits for that signal to
come back here.
"""

import importlib
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    target, separator, *argv = sys.argv[1:]
    assert separator == "--"
    module_name, _, name = target.partition(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(2)  # the signal comes back meanwhile, and is noted
        return result

    setattr(module, name, wrapper)
    from brainprop.runs.jobs import _child

    return _child(argv)


if __name__ == "__main__":
    sys.exit(main())
