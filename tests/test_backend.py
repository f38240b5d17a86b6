"""Starting Keras quietly; seeding without importing TensorFlow under another backend."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from brainprop.utils import backend
from test_cli import write_learnable_mnist

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


def test_filter_log_drops_messages_below_the_level_with_their_continuation_lines():
    assert backend.filter_log(STARTUP, 0) == STARTUP
    assert backend.filter_log(STARTUP, 2).splitlines() == [
        "E0000 00:00:1.4 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
        "/path/module.py:3: UserWarning: a Python warning",
    ]
    assert backend.filter_log(STARTUP, 3) == ""  # the warning continues the E line
    assert backend.filter_log("plain output\n", 3) == "plain output\n"


def test_set_random_seed_reseeds_keras_numpy_and_python():
    # The one private name backend.set_random_seed uses, where it expects it.
    from keras.src.utils import rng_utils

    assert hasattr(rng_utils.tf, "available")
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
