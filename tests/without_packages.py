"""Run a module of the project as on a machine where some packages are not installed.

    python tests/without_packages.py tensorflow,jax -m brainprop.runs.cli ARGS...
    python tests/without_packages.py tensorflow -c "import brainprop, keras; ..."

Each named package is hidden: `importlib.util.find_spec` does not find it and importing
it fails, as when it is not installed (`-` hides none).
"""

import importlib.util
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

hidden = {name for name in sys.argv[1].split(",") if name and name != "-"}
find_spec = importlib.util.find_spec


def find_spec_unless_hidden(name, package=None):
    if name.split(".")[0] in hidden:
        return None
    return find_spec(name, package)


importlib.util.find_spec = find_spec_unless_hidden
for name in hidden:
    sys.modules[name] = None  # `import name` raises ImportError

assert sys.argv[2] in ("-m", "-c"), "usage: without_packages.py PACKAGES -m MODULE | -c CODE ARGS..."
if sys.argv[2] == "-c":
    code = sys.argv[3]
    sys.argv = ["-c", *sys.argv[4:]]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
else:
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
