"""Data-parallel checks on two virtual CPU devices, run in a fresh process.

    KERAS_BACKEND=jax python tests/distributed_checks.py OUT.json

The devices must exist before the backend starts, hence the separate process
(`tests/test_devices.py` starts it).  JAX: `--xla_force_host_platform_device_count=2`;
TensorFlow: the CPU split into two logical devices.  Writes what the tests
compare, as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    # XLA's CPU runtime sizes its thread pool by the cores: on a 2-core machine
    # one virtual device can wait for a thread forever while the other waits
    # for it in the gradients' all-reduce (XLA aborts after 40 s).
    os.environ.setdefault("PJRT_NPROC", "8")
else:
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * 2,
    )

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).parent)]

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from synthetic import SHAPE, bright_rows  # noqa: E402

from brainprop.data.pipeline import ImageBatches  # noqa: E402
from brainprop.model import select_action  # noqa: E402
from brainprop.model.rules import RULES  # noqa: E402
from brainprop.nets.architectures import ARCHITECTURES  # noqa: E402
from brainprop.nets.build import build_model, compile_model  # noqa: E402
from brainprop.utils import devices  # noqa: E402

BATCH = 64
CLASSES = 10
Q_ROW = [2.0, 1.0, 0.0, -1.0, 0.5]


TRAIN = bright_rows(2048, 0, CLASSES)
TEST = bright_rows(256, 1, CLASSES)


def train(distribute: bool, algorithm: str, epochs: int, epsilon: float | None = None,
          learning_rate: float = 0.1):
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    with devices.placement(distribute=distribute, say=lambda line: None) as place:
        model = build_model(ARCHITECTURES["dense"], RULES[algorithm], SHAPE, CLASSES, seed=1,
                            batch_size=BATCH)
        if epsilon is not None:
            model.epsilon = epsilon
        compile_model(model, RULES[algorithm], learning_rate)
        history = model.fit(
            ImageBatches(*TRAIN, BATCH, shuffle=True, seed=1),
            validation_data=ImageBatches(*TEST, BATCH),
            epochs=epochs,
            shuffle=False,  # as in training: ImageBatches shuffles, by (seed, epoch)
            verbose=0,
        )
        weights = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    return place.replicas, weights, history.history


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def same_epoch(algorithm: str, epsilon: float | None = None) -> dict:
    one, weights_one, _ = train(False, algorithm, 1, epsilon)
    two, weights_two, _ = train(True, algorithm, 1, epsilon)
    return {
        "replicas": [one, two],
        "max_difference": max_difference(weights_one, weights_two),
        "max_change": max_difference(weights_one, train(False, algorithm, 0)[1]),
    }


def replica_draws(q: np.ndarray, epsilon: float) -> list[np.ndarray]:
    """Each replica's choices for the same Q values from one seed state: on
    TensorFlow, every replica runs the step on `q`; on JAX, one program draws for
    `q` twice over, sharded along the batch over the two devices."""
    with devices.placement(distribute=True, say=lambda line: None):
        generator = keras.random.SeedGenerator(7)
        if BACKEND == "tensorflow":
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
            q_tensor = tf.constant(q)
            step = tf.function(
                lambda: strategy.run(lambda: select_action(q_tensor, epsilon, generator))
            )
            return [r.numpy() for r in strategy.experimental_local_results(step())]
        import jax

        mesh = jax.sharding.Mesh(jax.devices(), ("batch",))
        sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))

        def draw(q_values, state):
            with keras.StatelessScope(state_mapping=[(generator.state, state)]):
                return select_action(q_values, epsilon, generator)

        both = np.concatenate([q, q])
        state = generator.state.value
        global_draw = jax.jit(draw)(jax.device_put(both, sharded), state)
        whole = np.asarray(jax.jit(draw)(both, state))  # one device, unsharded
        shards = [np.asarray(s.data) for s in global_draw.addressable_shards]
        assert len(shards) == 2, global_draw.sharding
        assert np.array_equal(np.concatenate(shards), whole), "sharded draw is not global"
        return shards


def selection() -> dict:
    uniform = replica_draws(np.zeros((20_000, 10), np.float32), 1.0)
    q = np.tile(np.asarray(Q_ROW, np.float32), (100_000, 1))
    frequencies = [
        (np.bincount(draws, minlength=len(Q_ROW)) / len(draws)).tolist()
        for draws in replica_draws(q, 0.02)
    ]
    return {
        "uniform_agreement": float(np.mean(uniform[0] == uniform[1])),
        "uniform_identical_replicas": bool(np.array_equal(uniform[0], uniform[1])),
        "frequencies": frequencies,
    }


def learning() -> dict:
    out = {}
    for name, distribute in (("one", False), ("two", True)):
        # The paper's text's rate for this network: classes are found in a few epochs.
        _, _, history = train(distribute, "BrainProp", 4, learning_rate=1.0)
        out[name] = [float(v) for v in history["val_accuracy"]]
    return out


def command_line(directory: Path) -> dict:
    """main.py with --distribute (and --mixed-precision) on two devices, through -s."""
    from brainprop.runs.cli import main as cli

    (x_train, y_train), (x_test, y_test) = bright_rows(1200, 2), bright_rows(400, 3)
    np.savez(directory / "mnist.npz", x_train=x_train[..., 0], y_train=y_train,
             x_test=x_test[..., 0], y_test=y_test)
    common = ["MNIST", "dense", "EBP", "--data-dir", str(directory), "--epochs", "1",
              "--distribute", "--mixed-precision"]
    saved = cli([*common, "-s", "--output-dir", str(directory / "out"), "--batch-size", "40"])
    summary = json.loads(next((directory / "out").glob("*_summary.json")).read_text())
    uneven = cli([*common, "--batch-size", "50"])  # 400 test images: last batch 0; 1200: 0
    odd = cli([*common, "--batch-size", "25"])  # 25 does not split over 2 devices
    return {
        "exit": [saved, uneven, odd],
        "devices": summary["devices"],
        "dtype_policy": summary["dtype_policy"],
        "best_val_accuracy": summary["best_val_accuracy"],
    }


def main(path: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        cli_result = command_line(Path(scratch))
    results = {
        "backend": keras.backend.backend(),
        "devices": devices.local_devices(),
        "ebp": same_epoch("EBP"),
        "brainprop_greedy": same_epoch("BrainProp", epsilon=0.0),
        "brainprop": same_epoch("BrainProp"),
        "selection": selection(),
        "learning": learning(),
        "command_line": cli_result,
    }
    Path(path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
