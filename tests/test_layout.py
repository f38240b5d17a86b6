"""The package's layout: separate places whose imports run one way, each with a public surface."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

PACKAGE = Path(__file__).resolve().parents[1] / "brainprop"
ROOT = PACKAGE.parent

# What each place may import besides itself: plumbing <- data, rule <- nets <- training
# <- runs <- tables.  The entry modules at the top (`python -m brainprop.report`, ...)
# only hand over to their place.
MAY_IMPORT = {
    "utils": set(),
    "data": {"utils"},
    "model": {"utils"},
    "nets": {"utils", "model"},
    "train": {"utils", "data", "model", "nets"},
    "runs": {"utils", "data", "model", "nets", "train"},
    "tables": {"utils", "data", "model", "nets", "train", "runs"},
}
SUBPACKAGES = [place for place in MAY_IMPORT if (PACKAGE / place).is_dir()]
ENTRY_MODULES = ["reproduce", "report", "classorder"]


def place_of(module: str) -> str | None:
    """`brainprop.nets.layers` -> `nets`; `brainprop.model` -> `model`."""
    parts = module.split(".")
    if parts[0] != "brainprop" or len(parts) < 2:
        return None
    return parts[1]


def imported_modules(path: Path) -> set[str]:
    """Every brainprop module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("brainprop.")}


def placed_files():
    for place in MAY_IMPORT:
        folder = PACKAGE / place
        files = sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{place}.py"]
        for path in files:
            yield place, path


def test_the_package_is_a_handful_of_places():
    assert len(SUBPACKAGES) >= 4
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", *MAY_IMPORT, *ENTRY_MODULES}
    assert not loose, f"modules outside every place: {sorted(loose)}"


@pytest.mark.parametrize("place,path", list(placed_files()),
                         ids=lambda x: x if isinstance(x, str) else x.name)
def test_imports_run_one_way(place, path):
    allowed = MAY_IMPORT[place] | {place}
    wrong = sorted(module for module in imported_modules(path)
                   if place_of(module) not in allowed | {None} and place_of(module) in MAY_IMPORT)
    assert not wrong, f"{path.relative_to(ROOT)} ({place}) imports {wrong}"


@pytest.mark.parametrize("place", SUBPACKAGES)
def test_every_public_name_of_a_place_resolves(place):
    package = importlib.import_module(f"brainprop.{place}")
    assert package.__all__, f"brainprop.{place} names no public surface"
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError):
        _ = package.no_such_name


def test_describing_a_run_starts_no_backend():
    code = ("import sys; import brainprop.runs, brainprop.runs.runconfig, brainprop.nets, "
            "brainprop.tables; print('keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


# The modules that plan and check a run, and refuse it in one line, before a backend
# starts; `brainprop.runs.execution` (which builds and trains) imports Keras at its top.
BEFORE_KERAS = ["runs.runconfig", "runs.plan", "runs.run", "runs.cli", "runs.jobs",
                "runs.outputs", "runs.classorder", "tables.reproduce"]


@pytest.mark.parametrize("module", BEFORE_KERAS)
def test_planning_and_checking_a_run_imports_no_keras(module):
    code = f"import sys; import brainprop.{module}; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


def test_building_and_training_a_run_imports_keras_at_the_top():
    tree = ast.parse((PACKAGE / "runs" / "execution.py").read_text())
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert "keras" in top


@pytest.mark.parametrize("command", [
    ["main.py"], ["tinyimagenet.py"],
    *(["-m", f"brainprop.{name}"] for name in ENTRY_MODULES),
], ids=lambda c: " ".join(c))
def test_every_documented_command_answers_help(command):
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


# --- habits every module keeps -------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """`brainprop.runs.plan` -> its path, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(path: Path):
    """(module, name) for every `from brainprop.x import name` in `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("brainprop"):
            for alias in node.names:
                yield node.module, alias.name


def test_no_module_imports_another_modules_private_name():
    wrong = [f"{module} imports {source}.{name}"
             for module, path in module_files().items()
             for source, name in imported_names(path)
             if name.startswith("_") and source != module]
    assert not wrong, wrong


def test_no_two_modules_import_each_other_even_through_others():
    modules = module_files()
    edges = {module: set() for module in modules}
    for module, path in modules.items():
        for source, name in imported_names(path):
            target = f"{source}.{name}" if f"{source}.{name}" in modules else source
            if target in modules and target != module:
                edges[module].add(target)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges[module].update(a.name for a in node.names
                                     if a.name in modules and a.name != module)
    # A package's __init__ names its modules lazily (strings): no edge to follow there.
    done, cycles = set(), []

    def visit(module, trail):
        if module in trail:
            cycles.append(trail[trail.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*trail, module])
        done.add(module)

    for module in modules:
        visit(module, [])
    assert not cycles, cycles[:3]


# Layer constructors take Keras' many layer options; everything else takes an object
# instead of a long list of pieces.
MAX_PARAMETERS = 6


def test_no_function_takes_more_than_six_parameters():
    wrong = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text())
        constructors = {id(item) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                        and module.startswith("brainprop.nets.")
                        for item in node.body if getattr(item, "name", "") == "__init__"}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    or id(node) in constructors:
                continue
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            count = len(names) + bool(args.vararg) + bool(args.kwarg) \
                - (names[:1] in (["self"], ["cls"]))
            if count > MAX_PARAMETERS:
                wrong.append(f"{module}.{node.name}: {count}")
    assert not wrong, wrong


# Imports inside functions are kept for code that must run before a backend starts or
# must not import an optional package; each says why on the line above or beside it.
MAX_LOCAL_IMPORTS = 40


def test_imports_inside_functions_are_few_and_each_says_why():
    local, silent = set(), []
    for module, path in module_files().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) \
                        and (module, inner.lineno) not in local:
                    local.add((module, inner.lineno))
                    here, above = lines[inner.lineno - 1], lines[inner.lineno - 2]
                    if "#" not in here and not above.strip().startswith("#"):
                        silent.append(f"{module}:{inner.lineno}")
    assert len(local) <= MAX_LOCAL_IMPORTS, sorted(local)
    assert not silent, f"local imports without a reason: {silent}"
