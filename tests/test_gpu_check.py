"""benchmarks/gpu_check.sh finds JAX and PyTorch on the machine it is for.

That machine's `python3` is Python 3.12, itself the interpreter of a virtual environment
holding torch, jax and the usual scientific packages, but neither Keras nor TensorFlow.  The
simulation here is such a virtual environment, made from a Python 3.12 (`GPU_CHECK_PYTHON`,
else `python3.12` on the PATH, else pyenv's), into which pip installs PyPI's torch (a CUDA
build, as the machine's, with the CUDA libraries that `import torch` loads), `jax[cpu]`
and the other packages the check needs of those the machine holds: about 2.5 GB from
PyPI, 4.2 GB installed.  The wheels carried are those of what it lacks (Keras, namex,
optree), fetched for Python 3.12 with the command in gpu_check.sh's header.  Its
`--dry-run` runs the GPU tests (skipped: no GPU) and benchmarks/epoch.py in float32 and
bfloat16 on both backends.

It takes several minutes, PyPI and 4.2 GB of disk (freed at its end), so it runs when
asked: `GPU_CHECK_SIMULATION=1 python -m pytest -q tests/test_gpu_check.py`.  CI asks,
once, after the JAX tests.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.backend_independent
simulation = pytest.mark.skipif(
    os.environ.get("GPU_CHECK_SIMULATION") != "1",
    reason="several minutes, PyPI and 4 GB of disk: GPU_CHECK_SIMULATION=1 runs it")

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PYTHON = "3.12"
# What the GPU machine's environment holds of what the check needs (the device tool's
# KINDS.md lists it), torch and jax aside; their dependencies come along.
MACHINE_HAS = ("numpy", "scipy", "matplotlib", "h5py", "pillow", "tqdm", "pytest",
               "hypothesis", "rich", "absl-py", "ml-dtypes", "packaging")
LACKS = ("keras", "namex", "optree")
# What the CUDA build of torch needs that neither `import torch` nor a CPU loads: Triton
# (kernels compiled for a GPU), cuda-bindings and cuSOLVER; about 1 GB installed.
NEVER_LOADED = ("triton", "cuda-bindings", "cusolver")
PIP = ("-m", "pip", "--disable-pip-version-check", "install", "--quiet", "--no-cache-dir",
       "--no-compile")


def base_python() -> str:
    """A Python 3.12 interpreter to make the simulated machine's environment from."""
    candidates = [os.environ.get("GPU_CHECK_PYTHON"), shutil.which("python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12.*/bin/python3.12")))
    for candidate in filter(None, candidates):
        version = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip() == MACHINE_PYTHON:
            return candidate
    pytest.fail(f"no Python {MACHINE_PYTHON} found: set GPU_CHECK_PYTHON to one")


def cuda_torch_needs(requires) -> list[str]:
    """torch's requirements, less its extras and what it never loads on a CPU."""
    needs = []
    for line in requires:
        requirement = Requirement(line)
        if "extra" in str(requirement.marker or "") or requirement.name in NEVER_LOADED:
            continue
        requirement.extras -= set(NEVER_LOADED)
        needs.append(str(requirement))
    return needs


def test_cuda_torch_needs_leave_out_what_a_cpu_never_loads():
    requires = ['cuda-toolkit[cublas,cudart,cusolver]==13.0.3; platform_system == "Linux"',
                'triton==3.7.1; platform_system == "Linux"', "sympy>=1.13.3",
                'optree>=0.13.0; extra == "optree"']
    assert cuda_torch_needs(requires) == [
        'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"', "sympy>=1.13.3"]


@pytest.fixture
def machine(tmp_path):
    """The simulated GPU machine's Python: a virtual environment's interpreter (4 GB)."""
    folder = tmp_path / "machine-venv"
    try:
        subprocess.run([base_python(), "-m", "venv", str(folder)], check=True)
        python = str(folder / "bin" / "python")
        torch_version = metadata.version("torch").split("+")[0]
        subprocess.run([python, *PIP, "--no-deps", f"torch=={torch_version}"], check=True)
        requires = subprocess.run(
            [python, "-c", "from importlib import metadata; print(*metadata.requires('torch'), sep='\\n')"],
            capture_output=True, text=True, check=True).stdout.splitlines()
        subprocess.run([python, *PIP, *cuda_torch_needs(requires), f"jax[cpu]=={metadata.version('jax')}",
                        *MACHINE_HAS], check=True)
        yield python
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@simulation
def test_the_dry_run_finds_both_backends_when_python_is_a_virtual_environment(machine, tmp_path):
    having = subprocess.run(
        [machine, "-c", "import importlib.util as u, json, sys, torch, jax\n"
         "print(json.dumps({'python': '%d.%d' % sys.version_info[:2],\n"
         "                  'venv': sys.prefix != sys.base_prefix, 'torch': torch.__version__,\n"
         "                  'found': [n for n in ('keras', 'tensorflow', 'namex', 'optree')\n"
         "                            if u.find_spec(n)]}))"],
        capture_output=True, text=True)
    assert having.returncode == 0, having.stderr[-3000:]
    having = json.loads(having.stdout.splitlines()[-1])
    assert having["python"] == MACHINE_PYTHON and having["venv"]
    assert "+cu" in having["torch"]  # the CUDA build, as on the machine
    assert having["found"] == []

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--python-version", MACHINE_PYTHON,
                    "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "-d", str(wheels),
                    f"keras=={metadata.version('keras')}", *LACKS[1:]], check=True)

    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           str(wheels), str(out)], env={**env, "PYTHON": machine},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not installed here" not in done.stderr
    result = json.loads(out.read_text())
    assert result["python"].startswith(MACHINE_PYTHON + ".")
    steps = {step["step"]: step for step in result["steps"]}
    assert set(steps) == {"install", "tests jax", "epoch.py jax", "tests torch", "epoch.py torch"}
    for backend in ("jax", "torch"):
        policies = {run["policy"] for run in result["epoch"][backend]["runs"]}
        assert policies == {"float32", "mixed_bfloat16"}
