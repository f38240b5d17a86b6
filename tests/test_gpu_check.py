"""benchmarks/gpu_check.sh finds JAX and PyTorch on the machine it is for.

That machine's `python3` is itself the interpreter of a virtual environment holding
torch, jax and the usual scientific packages, but neither Keras nor TensorFlow.  The
simulation here is such a virtual environment, made from this Python's base interpreter,
whose site-packages hold (as links) the distributions of this environment that the GPU
machine has too, and nothing else; the wheels carried are those of what it lacks (Keras,
namex, optree), fetched with pip.  Its `--dry-run` runs the GPU tests (skipped: no GPU)
and benchmarks/epoch.py in float32 and bfloat16 on both backends.

It takes several minutes and pip's network, so it runs when asked:
`GPU_CHECK_SIMULATION=1 python -m pytest -q tests/test_gpu_check.py`.  It runs on this
Python's version, not the GPU machine's 3.12: a PyTorch wheel for another Python is a
CUDA build of several GB.
"""

import json
import os
import re
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(os.environ.get("GPU_CHECK_SIMULATION") != "1",
                       reason="several minutes and pip's network: GPU_CHECK_SIMULATION=1 runs it"),
]

ROOT = Path(__file__).resolve().parents[1]
# What the GPU machine's environment holds of what the check needs (the device tool's
# KINDS.md lists it); their dependencies come along.
MACHINE_HAS = ("torch", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "h5py", "pillow",
               "tqdm", "pytest", "hypothesis", "rich", "absl-py", "ml-dtypes", "packaging")
LACKS = ("keras", "namex", "optree")


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]


def closure(names) -> set[str]:
    """The installed distributions `names` need, themselves included (extras left out)."""
    seen, todo = set(), list(names)
    while todo:
        try:
            dist = metadata.distribution(todo.pop())
        except metadata.PackageNotFoundError:
            continue  # a dependency for another platform or Python
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        todo += [_name(r) for r in dist.requires or () if "extra ==" not in r]
    return seen


def link_distributions(names, site: Path) -> None:
    """Link each installed distribution's top-level files into `site`."""
    for name in names:
        dist = metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or ()}:
            source = Path(dist.locate_file(top))
            if top != ".." and source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)


def test_the_dry_run_finds_both_backends_when_python_is_a_virtual_environment(tmp_path):
    machine = tmp_path / "machine-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(machine)
    site = next(machine.glob("lib/python3.*/site-packages"))
    having = closure(MACHINE_HAS)
    assert not having & {"keras", "tensorflow"}
    link_distributions(having | closure(["pip"]), site)
    python = machine / "bin" / "python"

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "-d", str(wheels),
                    f"keras=={metadata.version('keras')}", "namex", "optree"], check=True)

    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           str(wheels), str(out)], env={**env, "PYTHON": str(python)},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not installed here" not in done.stderr
    result = json.loads(out.read_text())
    steps = {step["step"]: step for step in result["steps"]}
    assert set(steps) == {"install", "tests jax", "epoch.py jax", "tests torch", "epoch.py torch"}
    for backend in ("jax", "torch"):
        policies = {run["policy"] for run in result["epoch"][backend]["runs"]}
        assert policies == {"float32", "mixed_bfloat16"}
