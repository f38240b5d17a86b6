"""Run main.py's command line; SIGINT arrives while MODULE is first imported, inside
library code that swallows whatever is raised (`try: ... except BaseException`), as
some imports and plugin loaders do.

    python tests/signal_at_import.py MODULE -- ARGS...
"""

import importlib.abc
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class SignalDuringImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str):
        self.module, self.fired = module, False

    def find_spec(self, name, path=None, target=None):
        if name == self.module and not self.fired:
            self.fired = True
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the signal is handled in here
            except BaseException:  # noqa: BLE001 - the swallowing library code
                pass
        return None


def main() -> int:
    module, separator, *argv = sys.argv[1:]
    assert separator == "--"
    sys.meta_path.insert(0, SignalDuringImport(module))
    from brainprop.runs.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
