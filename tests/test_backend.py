"""Starting Keras quietly; seeding without importing TensorFlow under another backend."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_cli import write_learnable_mnist

from brainprop.utils import backend
from brainprop.utils.errors import BrainPropError

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[")
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit", re.MULTILINE)

STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1.1 1 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1.2 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
W0000 00:00:1.3 1 something.cc:1] a warning
E0000 00:00:1.4 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
/path/module.py:3: UserWarning: a Python warning
"""


@pytest.mark.backend_independent
def test_filter_log_drops_messages_below_the_level_with_their_continuation_lines():
    assert backend.filter_log(STARTUP, 0) == STARTUP
    assert backend.filter_log(STARTUP, 2).splitlines() == [
        "E0000 00:00:1.4 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
        "/path/module.py:3: UserWarning: a Python warning",
    ]
    assert backend.filter_log(STARTUP, 3) == ""  # the warning continues the E line
    assert backend.filter_log("plain output\n", 3) == "plain output\n"


def test_set_random_seed_reseeds_keras_numpy_and_python():
    draws = []
    for _ in range(2):
        backend.set_random_seed(7)
        draws.append((float(keras.random.uniform(())), float(np.random.rand())))
    assert draws[0] == draws[1]
    backend.set_random_seed(8)
    assert (float(keras.random.uniform(())), float(np.random.rand())) != draws[0]


RUN = """\
import sys
from brainprop.runs.cli import main
status = main(sys.argv[1:])
print("modules:", sorted(m for m in ("tensorflow", "jax") if m in sys.modules))
sys.exit(status)
"""


@pytest.fixture(scope="module")
def run_to_files(tmp_path_factory):
    """A normal run with -s, stdout and stderr to files, TF's log level left unset."""
    base = tmp_path_factory.mktemp("quiet")
    data = write_learnable_mnist(base / "data", n_train=300, n_test=100)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out, err = base / "stdout.txt", base / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        status = subprocess.run(
            [sys.executable, "-c", RUN, "MNIST", "dense", "BrainProp", "-s", "--epochs", "3",
             "--data-dir", str(data), "--output-dir", str(base / "out")],
            stdout=stdout, stderr=stderr, cwd=ROOT, env=env,
        ).returncode
    return status, out.read_text(), err.read_text()


def test_output_to_a_file_is_one_plain_line_per_epoch(run_to_files):
    status, out, _ = run_to_files
    assert status == 0
    assert not ANSI.search(out) and "\r" not in out and "\b" not in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epoch_lines] == ["Epoch 1/3", "Epoch 2/3",
                                                             "Epoch 3/3"]
    assert all("val_accuracy: " in line for line in epoch_lines)
    assert "step" not in out  # no progress-bar remains


def test_nothing_from_tensorflows_logger_reaches_stderr(run_to_files):
    _, _, err = run_to_files
    assert not TF_LOG_LINE.search(err), err


def test_tensorflow_is_not_imported_under_another_backend(run_to_files):
    _, out, _ = run_to_files
    modules = out.splitlines()[-1]
    if keras.backend.backend() == "tensorflow":
        assert "'tensorflow'" in modules
    else:
        assert "tensorflow" not in modules


# --- Which backend starts -----------------------------------------------------------------


def everything_but(*missing):
    return lambda name: name not in missing


@pytest.mark.backend_independent
@pytest.mark.parametrize("named", ["tensorflow", "jax", "torch"])
def test_the_named_backend_starts_without_a_note(named):
    assert backend.pick(named, "KERAS_BACKEND", everything_but()) == (named, None)


@pytest.mark.backend_independent
def test_with_none_named_tensorflow_is_the_default():
    assert backend.pick(None, "", everything_but()) == ("tensorflow", None)


@pytest.mark.backend_independent
@pytest.mark.parametrize("missing, picked", [(("tensorflow",), "jax"),
                                             (("tensorflow", "jax"), "torch")])
def test_with_none_named_and_no_tensorflow_jax_else_torch_is_picked_and_said(missing, picked):
    chosen, note = backend.pick(None, "", everything_but(*missing))
    assert chosen == picked
    assert note == (f"Backend {picked}: KERAS_BACKEND is not set and TensorFlow is not "
                    "installed (set KERAS_BACKEND to choose)")


@pytest.mark.backend_independent
def test_no_backend_installed_is_one_line_saying_what_to_install():
    with pytest.raises(BrainPropError, match="^no Keras backend is installed: pip install "
                       "tensorflow"):
        backend.pick(None, "", everything_but("tensorflow", "jax", "torch"))


@pytest.mark.backend_independent
@pytest.mark.parametrize("named", ["pytorch", "numpy", "openvino", "Jax"])
def test_a_backend_this_project_does_not_train_on_is_one_line(named):
    with pytest.raises(BrainPropError) as error:
        backend.pick(named, "KERAS_BACKEND", everything_but())
    assert str(error.value) == (f"KERAS_BACKEND={named}: not a backend this project trains "
                                "on; set KERAS_BACKEND to tensorflow, jax or torch")


@pytest.mark.backend_independent
def test_a_named_backend_not_installed_says_how_to_install_it_and_what_is_there():
    with pytest.raises(BrainPropError) as error:
        backend.pick("torch", "KERAS_BACKEND", everything_but("torch", "tensorflow"))
    assert str(error.value) == ("KERAS_BACKEND=torch, but the torch package is not installed: "
                                "pip install torch, or set KERAS_BACKEND=jax (installed)")


def run_without(packages: str, *argv: str, env: dict | None = None, home=None):
    """main.py's command line, in a fresh process where `packages` are not installed."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    if home is not None:
        env["KERAS_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "without_packages.py"), packages, "-m",
         "brainprop.runs.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600)


@pytest.mark.backend_independent
@pytest.mark.parametrize("keras_json", [None, "tensorflow"])
def test_without_tensorflow_and_no_backend_named_a_run_says_first_which_it_picked(
        tmp_path, keras_json):
    # keras.json names tensorflow when Keras wrote it itself: that is no choice.
    home = tmp_path / "keras"
    home.mkdir()
    if keras_json:
        (home / "keras.json").write_text(f'{{"backend": "{keras_json}"}}')
    data = write_learnable_mnist(tmp_path / "data", n_train=64, n_test=32)
    done = run_without("tensorflow,jax", "MNIST", "dense", "EBP", "--epochs", "1",
                       "--data-dir", str(data), env={"KERAS_BACKEND": None}, home=home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("Backend torch: KERAS_BACKEND is not set and TensorFlow is not "
                        "installed (set KERAS_BACKEND to choose)")
    assert any(line.startswith("Training EBP") and "backend torch" in line for line in lines)


@pytest.mark.backend_independent
def test_print_config_keeps_stdout_json_and_says_the_picked_backend_on_stderr(tmp_path):
    done = run_without("tensorflow", "MNIST", "dense", "EBP", "--print-config",
                       env={"KERAS_BACKEND": None}, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == "jax"
    assert "Backend jax: KERAS_BACKEND is not set" in done.stderr


@pytest.mark.backend_independent
@pytest.mark.parametrize("env, json_backend, hidden, message", [
    ({"KERAS_BACKEND": "pytorch"}, None, "-",
     "KERAS_BACKEND=pytorch: not a backend this project trains on; set KERAS_BACKEND to "
     "tensorflow, jax or torch"),
    ({"KERAS_BACKEND": "torch"}, None, "torch",
     "KERAS_BACKEND=torch, but the torch package is not installed: pip install torch, or set "
     "KERAS_BACKEND=tensorflow (installed)"),
    ({"KERAS_BACKEND": None}, "jax", "jax",
     "{home}/keras.json names 'jax', but the jax package is not installed: pip install "
     "\"jax[cpu]\", or set KERAS_BACKEND=tensorflow (installed)"),
    ({"KERAS_BACKEND": None}, None, "tensorflow,jax,torch",
     "no Keras backend is installed: pip install tensorflow (the default), or jax or torch "
     "with KERAS_BACKEND=jax or KERAS_BACKEND=torch"),
])
def test_a_backend_that_cannot_start_is_one_line_before_anything_else(
        tmp_path, env, json_backend, hidden, message):
    if json_backend:
        (tmp_path / "keras.json").write_text(json.dumps({"backend": json_backend}))
    done = run_without(hidden, "MNIST", "dense", "EBP", "--data-dir", str(tmp_path / "none"),
                       env=env, home=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    # Started as `python -m brainprop.runs.cli`, and named so.
    name = f"{Path(sys.executable).name} -m brainprop.runs.cli"
    assert done.stderr.splitlines() == [f"{name}: error: {message.format(home=tmp_path)}"]


@pytest.mark.backend_independent
def test_a_backend_named_in_keras_json_is_the_one_that_starts(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    done = run_without("-", "MNIST", "dense", "EBP", "--print-config",
                       env={"KERAS_BACKEND": None}, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == "jax" and "Backend" not in done.stderr


# --- A script: `import brainprop` before Keras ---------------------------------------------

SCRIPT = """\
import os, sys
import brainprop
import keras
import numpy as np
from brainprop.model import BrainProp
from brainprop.nets.metrics import ClassAccuracy

inputs = keras.Input((4,))
model = BrainProp(inputs, keras.layers.Dense(3)(inputs), batch_size=8)
model.compile(optimizer="sgd", metrics=[ClassAccuracy(3)])
history = model.fit(np.ones((16, 4), "float32"), np.arange(16) % 3, batch_size=8, verbose=0)
print(keras.backend.backend(), os.environ.get("OMP_WAIT_POLICY"),
      sys.modules.get("tensorflow") is not None, len(history.history["class_accuracy"]))
"""


def script_without(packages: str, code: str, env: dict | None = None, home=None):
    """`python -c code`, in a fresh process where `packages` are not installed."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    if home is not None:
        env["KERAS_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "without_packages.py"), packages, "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.backend_independent
@pytest.mark.parametrize("missing, picked", [("tensorflow", "jax"), ("tensorflow,jax", "torch")])
def test_a_script_importing_brainprop_first_starts_the_backend_the_command_line_would(
        tmp_path, missing, picked):
    done = script_without(missing, SCRIPT, env={"KERAS_BACKEND": None, "OMP_WAIT_POLICY": None},
                          home=tmp_path)
    assert done.returncode == 0, done.stderr
    policy = "PASSIVE" if picked == "torch" else "None"
    assert done.stdout.split() == [picked, policy, "False", "1"]


@pytest.mark.backend_independent
def test_without_tensorflow_a_script_importing_keras_first_fails_as_documented(tmp_path):
    done = script_without("tensorflow", "import keras", env={"KERAS_BACKEND": None},
                          home=tmp_path)
    last_line = done.stderr.splitlines()[-1]
    assert done.returncode != 0
    assert last_line.startswith("ModuleNotFoundError: No module named 'tensorflow")


POLICY = "import os, sys; {first}import brainprop; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.backend_independent
@pytest.mark.parametrize("backend_named, policy, first, expected", [
    ("torch", None, "", "PASSIVE"),
    ("torch", "ACTIVE", "", "ACTIVE"),  # the user's choice stands
    ("jax", None, "", "None"),
    ("tensorflow", None, "", "None"),
    ("torch", None, "import torch; ", "None"),  # too late: OpenMP read it when torch loaded
])
def test_import_brainprop_gives_torch_the_command_lines_thread_policy(
        tmp_path, backend_named, policy, first, expected):
    done = script_without("-", POLICY.format(first=first), home=tmp_path,
                          env={"KERAS_BACKEND": backend_named, "OMP_WAIT_POLICY": policy})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.backend_independent
def test_import_brainprop_leaves_a_backend_that_cannot_start_to_be_refused(tmp_path):
    code = "import os, brainprop; print(os.environ['KERAS_BACKEND'])"
    done = script_without("-", code, env={"KERAS_BACKEND": "pytorch"}, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pytorch"


# --- Keeping freed memory (PyTorch on a CPU) -----------------------------------------------

# What a fresh process gives back to the system when it frees a 64 MiB array (MiB of its
# resident memory), and whether it kept freed memory.
_FREE = """
import re, sys
from pathlib import Path
import numpy as np
from brainprop.utils import backend
kept = backend.keep_freed_memory() if sys.argv[1] == "keep" else False
def resident():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024
array = np.ones(2**23)
before = resident()
del array
print(kept, before - resident())
"""


def given_back(mode, **environment):
    result = subprocess.run(
        [sys.executable, "-c", _FREE, mode], capture_output=True, text=True, check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
             **environment})
    kept, mib = result.stdout.split()
    return kept == "True", float(mib)


@pytest.mark.backend_independent
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_kept_for_the_next_allocation():
    kept, mib = given_back("keep")
    _, mib_without = given_back("no")

    assert kept
    assert mib_without > 60  # glibc unmaps the array's own mapping
    assert mib < 4


@pytest.mark.backend_independent
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_an_allocator_the_user_tunes_is_left_alone():
    kept, mib = given_back("keep", MALLOC_ARENA_MAX="2")

    assert not kept
    assert mib > 60
