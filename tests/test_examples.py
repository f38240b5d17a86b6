"""The scripts of examples/: each trains BrainProp on a network of its own and learns,
on whichever backend the tests run under; and docs/python-api.md's code runs as written."""

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PYTHON_API = ROOT / "docs" / "python-api.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))


def code_lines(path: Path) -> int:
    """Lines of statements: docstrings, comments, blank lines and the script's
    `if __name__ == "__main__":` left out."""
    tree = ast.parse(path.read_text())
    tree.body = [node for node in tree.body if not (
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))]
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return len(lines)


@pytest.mark.parametrize("name", ["skip_connection", "convert_classifier"])
def test_each_example_is_under_30_lines_of_code(name):
    assert code_lines(EXAMPLES / f"{name}.py") < 30


@pytest.mark.parametrize("name", ["skip_connection", "convert_classifier"])
def test_each_example_imports_brainprop_before_keras(name):
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    imported = [alias.name for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names]
    assert imported.index("brainprop") < imported.index("keras")


def test_skip_connection_example_learns_the_classes_and_draws_their_discovery(tmp_path):
    script = example("skip_connection")
    history = script["main"](epochs=10, plot=str(tmp_path / "classes.png"))
    chance = 1 / script["N_CLASSES"]
    assert history.history["accuracy"][-1] > chance + 0.3  # the reward rate
    assert history.history["val_accuracy"][-1] > chance + 0.4
    per_class = np.asarray(history.history["val_class_accuracy"][-1])
    assert per_class.shape == (script["N_CLASSES"],) and (per_class > 0.5).sum() >= 4
    assert (tmp_path / "classes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_classifier_example_trains_the_classifier_through_brainprop():
    script = example("convert_classifier")
    history, classifier_accuracy = script["main"](epochs=3)
    chance = 1 / script["N_CLASSES"]
    assert history.history["accuracy"][-1] > chance + 0.4
    assert classifier_accuracy > chance + 0.5
    np.testing.assert_allclose(classifier_accuracy, history.history["val_accuracy"][-1],
                               atol=1e-6)


# --- docs/python-api.md ----------------------------------------------------------------------


def python_api_scripts() -> list[str]:
    """The page's Python blocks, as the scripts they make: each block goes on the script
    before it, except one that starts with `import brainprop`, which starts a new one."""
    scripts: list[str] = []
    for block in PYTHON_BLOCK.findall(PYTHON_API.read_text(encoding="utf-8")):
        if block.startswith("import brainprop") or not scripts:
            scripts.append(block)
        else:
            scripts[-1] += "\n" + block
    return scripts


def small_mnist():
    """What `keras.datasets.mnist.load_data()` gives, in shape and type, 256 and 64 images."""
    rng = np.random.default_rng(0)
    return tuple((rng.integers(0, 256, (n, 28, 28), dtype="uint8"), np.arange(n) % 10)
                 for n in (256, 64))


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    first, *others = python_api_scripts()
    assert len(others) == 1, "the page is one script and the one that loads its saved model"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", small_mnist)  # no download

    namespace = {"__name__": "__main__"}
    exec(compile(first, str(PYTHON_API), "exec"), namespace)

    assert len(namespace["history"].history["val_class_accuracy"]) == 20
    assert (tmp_path / "class_discovery.png").read_bytes()[:4] == b"\x89PNG"
    loaded = subprocess.run(
        [sys.executable, "-c", others[0]], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    assert "Total params" in loaded.stdout
