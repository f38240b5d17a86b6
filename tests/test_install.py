"""What `pip install .` installs with each backend (setup.py): requirements.txt with
TensorFlow by default, and with BRAINPROP_BACKEND=jax or torch that backend in its place."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["setup.py", "pyproject.toml", "MANIFEST.in", "requirements.txt", "README.md",
                 "LICENSE"]
METADATA = """\
from pathlib import Path
from setuptools import build_meta
Path("metadata").mkdir()
folder = build_meta.prepare_metadata_for_build_wheel("metadata")
print((Path("metadata") / folder / "METADATA").read_text())
"""


def requires(tmp_path: Path, backend: str | None) -> subprocess.CompletedProcess:
    """setuptools' metadata of the package, built in a copy of the project (pip's first
    step of `pip install .`), under BRAINPROP_BACKEND=`backend`."""
    pytest.importorskip("setuptools")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "brainprop", project / "brainprop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, project / name)
    env = {k: v for k, v in os.environ.items() if k != "BRAINPROP_BACKEND"}
    if backend is not None:
        env["BRAINPROP_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", METADATA], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def requirements_txt() -> list[str]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [line for line in lines if line]


def dependencies(metadata: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line]


def normalised(requirements: list[str]) -> set[str]:
    return {str(Requirement(line)) for line in requirements}


@pytest.mark.parametrize("backend", [None, "tensorflow"])
def test_the_default_install_is_requirements_txt_with_tensorflow(tmp_path, backend):
    done = requires(tmp_path, backend)
    assert done.returncode == 0, done.stderr
    installed = normalised(dependencies(done.stdout))
    assert installed == normalised(requirements_txt())
    assert any(line.startswith("tensorflow") for line in installed)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_backend_named_is_installed_in_tensorflows_place(tmp_path, backend):
    done = requires(tmp_path, backend)
    assert done.returncode == 0, done.stderr
    installed = normalised(dependencies(done.stdout))
    without_tensorflow = [line for line in requirements_txt() if not line.startswith("tensorflow")]
    assert installed == normalised([*without_tensorflow, backend])


def test_a_backend_this_project_does_not_train_on_is_refused(tmp_path):
    done = requires(tmp_path, "pytorch")
    assert done.returncode != 0
    assert ("BRAINPROP_BACKEND=pytorch: not a backend this project trains on; set it to jax "
            "or torch, or leave it unset for TensorFlow") in done.stderr
