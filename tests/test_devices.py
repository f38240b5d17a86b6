"""One run over several devices, and mixed precision (brainprop/utils/devices.py).

The data-parallel checks run in a fresh process with two virtual CPU devices
(`tests/distributed_checks.py`), on the backend under test.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from synthetic import SHAPE, bright_rows

from brainprop.data.pipeline import ImageBatches
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model, compile_model
from brainprop.utils import devices, placement
from brainprop.utils.errors import BrainPropError

ROOT = Path(__file__).resolve().parents[1]
CHECKS = Path(__file__).with_name("distributed_checks.py")
Q_ROW = np.array([2.0, 1.0, 0.0, -1.0, 0.5])
ON_TORCH = keras.backend.backend() == "torch"
NO_DATA_PARALLEL = "Keras 3.15 has no data-parallel training on torch (keras.distribution)"


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    if ON_TORCH:
        pytest.skip(NO_DATA_PARALLEL)
    out = tmp_path_factory.mktemp("distributed") / "checks.json"
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    done = subprocess.run(
        [sys.executable, str(CHECKS), str(out)], env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_virtual_devices_are_used(two_devices):
    assert two_devices["backend"] == keras.backend.backend()
    assert two_devices["devices"] == ["cpu:0", "cpu:1"]
    for check in ("ebp", "brainprop_greedy", "brainprop"):
        assert two_devices[check]["replicas"] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("check", ["ebp", "brainprop_greedy", "brainprop"])
def test_a_data_parallel_epoch_gives_the_weights_of_one_device(two_devices, check):
    # EBP; BrainProp choosing greedily (the gradient's 1/replicas share); and
    # BrainProp exploring, whose draws split over replicas exactly as on one device.
    result = two_devices[check]
    assert result["max_change"] > 1e-4  # the epoch moved the weights
    assert result["max_difference"] < 1e-5


@pytest.mark.slow
def test_replicas_draw_independent_streams(two_devices):
    # Same Q values and seed state on both replicas, uniform choice over 10
    # classes: independent draws agree one time in ten, identical ones always.
    selection = two_devices["selection"]
    assert not selection["uniform_identical_replicas"]
    assert abs(selection["uniform_agreement"] - 0.1) < 0.01  # 20,000 draws: sd 0.002


@pytest.mark.slow
def test_each_replica_selects_greedy_098_and_softmax_002(two_devices):
    softmax = np.exp(Q_ROW) / np.exp(Q_ROW).sum()
    expected = 0.02 * softmax
    expected[np.argmax(Q_ROW)] += 0.98
    for frequencies in two_devices["selection"]["frequencies"]:
        # 100,000 draws per replica: binomial standard errors below 3e-4.
        np.testing.assert_allclose(frequencies, expected, atol=1.5e-3)


@pytest.mark.slow
def test_a_short_data_parallel_run_learns_as_on_one_device(two_devices):
    one, two = two_devices["learning"]["one"], two_devices["learning"]["two"]
    assert one[-1] > 0.2 and two[-1] > 0.2  # chance is 0.1
    np.testing.assert_allclose(two, one, atol=0.02)


@pytest.mark.skipif(ON_TORCH, reason=NO_DATA_PARALLEL)
def test_distribute_with_one_device_says_so_and_trains_on_it():
    lines = []
    with devices.placement(distribute=True, say=lines.append) as place:
        assert place.replicas == 1
    assert lines == [f"--distribute: only one device ({place.devices[0]}) here; training on it"]


def test_batches_that_do_not_split_evenly_are_refused_in_one_line():
    with pytest.raises(BrainPropError, match="batch size 100 is not a multiple of 8"):
        placement.check_even_split(8, 100, {"training": 1000})
    with pytest.raises(BrainPropError, match="last batch of the 1001 training images holds 105"):
        placement.check_even_split(2, 128, {"training": 1001})
    placement.check_even_split(1, 100, {"training": 1001})  # one device: anything goes


@pytest.mark.parametrize("replicas", [2, 4, 8, 16])
def test_the_papers_data_sets_split_evenly_over_up_to_16_devices(replicas):
    sizes = {"MNIST": 60_000, "CIFAR": 50_000, "TinyImageNet": 100_000, "test": 10_000}
    for batch in (128, 32):  # every architecture's batch size
        placement.check_even_split(replicas, batch, sizes)


def test_mixed_precision_keeps_output_loss_and_selection_in_float32():
    lines = []
    with devices.placement(mixed_precision="float16", say=lines.append) as place:
        keras.utils.set_random_seed(1)
        model = build_model(ARCHITECTURES["dense"], RULES["BrainProp"], SHAPE, 10)
        compile_model(model, RULES["BrainProp"], 0.1)
    assert place.policy == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("dense_2").compute_dtype == "float16"
    assert model.get_layer("output").compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights)
    x, y = bright_rows(16, 0)
    q = model(x.astype("float32") / 255, training=True)
    assert keras.backend.standardize_dtype(q.dtype) == "float32"  # what the selection reads
    loss = model.compute_loss(y=y, y_pred=q)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    # Even Q values handed over in float16 are judged in float32.
    loss16 = model.compute_loss(y=y, y_pred=ops.cast(q, "float16"))
    assert keras.backend.standardize_dtype(loss16.dtype) == "float32"
    if not devices.has_accelerator():
        assert len(lines) == 1 and "float16 on a CPU is emulated" in lines[0]


@pytest.mark.parametrize("rule", ["BrainProp", "EBP"])
def test_bfloat16_computes_the_layers_in_bfloat16_and_keeps_float32_weights(rule):
    lines = []
    with devices.placement(mixed_precision="bfloat16", say=lines.append) as place:
        keras.utils.set_random_seed(1)
        model = build_model(ARCHITECTURES["conv"], RULES[rule], SHAPE, 10)
        compile_model(model, RULES[rule], 0.1)
    assert place.policy == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # restored
    # bfloat16 has float32's exponent: no loss scaling.
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    hidden = [layer for layer in model.layers[1:] if layer.name != "output"]
    assert hidden and all(layer.compute_dtype == "bfloat16" for layer in hidden)
    assert model.get_layer("output").compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights)
    x, y = bright_rows(16, 0)
    q = model(x.astype("float32") / 255, training=True)
    assert keras.backend.standardize_dtype(q.dtype) == "float32"
    if not devices.has_accelerator():
        assert len(lines) == 1 and lines[0].startswith("--mixed-precision bfloat16: no GPU")


def test_under_bfloat16_the_rule_computes_its_q_values_and_errors_in_float32(monkeypatch):
    from brainprop.model import attention_gated

    seen = []
    original = attention_gated.reward_prediction_error

    def recording(q_values, reward, selected_class):
        rpe = original(q_values, reward, selected_class)
        seen.append((keras.backend.standardize_dtype(q_values.dtype),
                     keras.backend.standardize_dtype(rpe.dtype)))
        return rpe

    monkeypatch.setattr(attention_gated, "reward_prediction_error", recording)
    with devices.placement(mixed_precision="bfloat16", say=lambda line: None):
        keras.utils.set_random_seed(1)
        model = build_model(ARCHITECTURES["conv"], RULES["BrainProp"], SHAPE, 10, batch_size=16)
        compile_model(model, RULES["BrainProp"], 0.1)
        x, y = bright_rows(16, 0)
        x = x.astype("float32") / 255
        q = model(x, training=True)
        # Q values handed over in bfloat16 are judged in float32 too.
        for y_pred in (q, ops.cast(q, "bfloat16")):
            loss = model.compute_loss(y=y, y_pred=y_pred)
            assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        model.train_on_batch(x, y)  # the compiled training step
    assert len(seen) >= 3 and set(seen) == {("float32", "float32")}


def test_a_cpu_note_says_whether_the_chip_computes_bfloat16(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_tile avx512_bf16 amx_bf16\n")
    features = placement.cpu_bfloat16(cpuinfo)
    assert features == ("avx512_bf16", "amx_bf16", "amx_tile")
    assert "this CPU computes bfloat16 (avx512_bf16, amx_bf16, amx_tile)" in devices.cpu_note(
        "bfloat16", features)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2\n")
    assert placement.cpu_bfloat16(cpuinfo) == ()
    assert "no bfloat16 arithmetic" in devices.cpu_note("bfloat16", ())
    assert placement.cpu_bfloat16(tmp_path / "absent") == ()
    assert "float16 on a CPU is emulated" in devices.cpu_note("float16", features)


def test_an_unknown_precision_is_refused_in_one_line():
    assert placement.dtype_policy(None) == "float32"
    assert placement.dtype_policy("float16") == "mixed_float16"
    assert placement.dtype_policy("bfloat16") == "mixed_bfloat16"
    with pytest.raises(BrainPropError, match="float16 or bfloat16, not 'int8'"):
        placement.dtype_policy("int8")


@pytest.mark.slow
def test_mixed_precision_learns_as_float32():
    accuracies = {}
    train, test = bright_rows(2048, 0), bright_rows(256, 1)
    for mixed in (False, True):
        keras.backend.clear_session()
        keras.utils.set_random_seed(1)
        with devices.placement(mixed_precision="float16" if mixed else None,
                               say=lambda line: None):
            model = build_model(ARCHITECTURES["dense"], RULES["BrainProp"], SHAPE, 10, batch_size=64)
            compile_model(model, RULES["BrainProp"], 1.0)
            history = model.fit(
                ImageBatches(*train, 64, shuffle=True), validation_data=ImageBatches(*test, 64),
                epochs=4, shuffle=False, verbose=0,
            )
        accuracies[mixed] = history.history["val_accuracy"]
    print("val accuracy float32", accuracies[False], "mixed_float16", accuracies[True])
    assert accuracies[False][-1] > 0.2 and accuracies[True][-1] > 0.2  # chance is 0.1
    assert abs(accuracies[True][-1] - accuracies[False][-1]) < 0.1


@pytest.mark.slow
def test_main_distributes_with_mixed_precision_and_refuses_uneven_batches(two_devices):
    result = two_devices["command_line"]
    assert result["exit"] == [0, 0, 2]
    assert result["devices"] == ["cpu:0", "cpu:1"]
    assert result["dtype_policy"] == "mixed_float16"
    assert result["best_val_accuracy"] > 0.5  # EBP learns the rows in one epoch


@pytest.mark.skipif(ON_TORCH, reason=NO_DATA_PARALLEL)
def test_a_launch_over_several_hosts_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    with pytest.raises(BrainPropError, match="several hosts, which --distribute does not do"):
        with devices.placement(distribute=True, say=lambda line: None):
            pass
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
    with devices.placement(distribute=True, say=lambda line: None) as place:
        assert place.replicas >= 1


@pytest.mark.skipif(not ON_TORCH, reason="jax and tensorflow train data parallel")
def test_distribute_on_torch_is_refused_in_one_line_naming_the_backends_that_can():
    with pytest.raises(BrainPropError, match="--distribute needs the jax or tensorflow backend"):
        with devices.placement(distribute=True, say=lambda line: None):
            pass


@pytest.mark.backend_independent
def test_main_refuses_distribute_on_torch_before_reading_any_data(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run(
        [sys.executable, "main.py", "MNIST", "dense", "EBP", "--distribute", "--data-dir",
         str(tmp_path / "missing")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "main.py: error: --distribute needs the jax or tensorflow backend: Keras has no "
        "data-parallel training on torch; run with KERAS_BACKEND=jax, or drop --distribute"]


def test_torch_names_its_devices_as_the_other_backends_do():
    names = devices.local_devices()
    assert names and all(re.fullmatch(r"(cpu|gpu|tpu):\d+", name) for name in names)


needs_gpu = pytest.mark.skipif(not devices.has_accelerator(), reason="no GPU here")


@pytest.mark.gpu
@needs_gpu
def test_the_gpu_is_where_the_model_computes():
    assert devices.local_devices()[0] == "gpu:0"
    with devices.placement() as place:
        model = build_model(ARCHITECTURES["dense"], RULES["BrainProp"], SHAPE, 10)
        compile_model(model, RULES["BrainProp"], 0.1)
    assert place.devices == ("gpu:0",)
    q = model(bright_rows(8, 0)[0].astype("float32") / 255)
    if keras.backend.backend() == "torch":
        assert q.device.type == "cuda" and model.weights[0].value.device.type == "cuda"
    elif keras.backend.backend() == "jax":
        assert all(device.platform == "gpu" for device in q.devices())


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("mixed", [None, "float16", "bfloat16"])
def test_a_run_on_the_gpu_learns_and_records_the_gpu(tmp_path, mixed):
    from test_cli import write_learnable_mnist

    from brainprop.runs.cli import main

    data = write_learnable_mnist(tmp_path / "data", n_train=2048, n_test=512)
    argv = ["MNIST", "conv", "BrainProp", "-s", "--epochs", "3", "--data-dir", str(data),
            "--output-dir", str(tmp_path / "out")] + (["--mixed-precision", mixed] if mixed else [])
    assert main(argv) == 0
    summary = json.loads(next((tmp_path / "out").glob("*_summary.json")).read_text())
    assert summary["devices"] == ["gpu:0"]
    assert summary["dtype_policy"] == (f"mixed_{mixed}" if mixed else "float32")
    assert summary["best_val_accuracy"] > 0.5  # chance is 0.1
