"""`--distribute` on two virtual CPU devices against one device: seconds per epoch.

    KERAS_BACKEND=tensorflow python benchmarks/distribute.py --json distribute_tf.json
    KERAS_BACKEND=jax python benchmarks/distribute.py --json distribute_jax.json

Each measurement is a fresh process (the devices must be set before the backend
starts): "one" trains on the machine's single CPU device, "two" splits the CPU
into two devices (TensorFlow: two logical devices; JAX:
`--xla_force_host_platform_device_count=2`) and trains data-parallel over them
as `main.py --distribute` does.  Both train the real model through the real
input pipeline (`ImageBatches`, `fit`) on synthetic images, the same global
batch; the figure is the median epoch after the first (which compiles).  The
processes alternate, `--rounds` times each, so that load on a shared machine
falls on both alike.  Speed-up = one / two (above 1: two devices are faster).

On a CPU both "devices" share the same cores, so this measures the cost of
the data-parallel machinery (splitting batches, summing gradients), not a gain:
a GPU per device is where --distribute pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common


def child(mode: str, architecture: str, images: int, epochs: int, out: str) -> None:
    # JAX: a thread pool larger than the cores, for both processes alike (with
    # one thread per core, two virtual devices can deadlock in their all-reduce).
    os.environ.setdefault("PJRT_NPROC", "8")
    if mode == "two":
        if os.environ.get("KERAS_BACKEND") == "jax":
            os.environ["XLA_FLAGS"] = (
                os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
            )
        else:
            import tensorflow as tf

            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0],
                [tf.config.LogicalDeviceConfiguration()] * 2,
            )
    import keras
    import numpy as np

    from brainprop.data.pipeline import ImageBatches
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model
    from brainprop.train.training import EpochTimer
    from brainprop.utils.devices import placement

    arch = ARCHITECTURES[architecture]
    shape = common.INPUT_SHAPES[architecture]
    rng = np.random.default_rng(0)
    data = ImageBatches(
        rng.integers(0, 256, (images, *shape), dtype=np.uint8),
        rng.integers(0, common.N_CLASSES, images).astype(np.int32),
        arch.batch_size,
        shuffle=True,
    )
    keras.utils.set_random_seed(1)
    with placement(distribute=mode == "two", say=common.progress) as place:
        model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], shape, common.N_CLASSES)
        compile_model(model, RULES["BrainProp"], arch.learning_rate)
        timer = EpochTimer()
        model.fit(data, epochs=epochs, callbacks=[timer], shuffle=False, verbose=0)
    Path(out).write_text(json.dumps({"replicas": place.replicas, "seconds": timer.seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="conv", choices=list(common.INPUT_SHAPES))
    parser.add_argument("--images", type=int, default=4096, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per process (>= 2)")
    parser.add_argument("--rounds", type=int, default=3, help="processes of each kind")
    parser.add_argument("--child", choices=["one", "two"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.architecture, args.images, args.epochs, args.out)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch compiles")
    epochs: dict[str, list[float]] = {"one": [], "two": []}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            order = ["one", "two"] if round_number % 2 == 0 else ["two", "one"]
            for mode in order:
                out = Path(scratch) / f"{mode}{round_number}.json"
                common.progress(f"round {round_number + 1}/{args.rounds}: {mode} device(s) ...")
                done = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--out", str(out),
                     "--architecture", args.architecture, "--images", str(args.images),
                     "--epochs", str(args.epochs)],
                    capture_output=True, text=True,
                )
                if done.returncode != 0:
                    failures.append(f"{mode} round {round_number + 1}: exit {done.returncode}: "
                                    + done.stderr.strip().splitlines()[-1][:300])
                    continue
                result = json.loads(out.read_text())
                assert result["replicas"] == (2 if mode == "two" else 1), result
                epochs[mode] += result["seconds"][1:]
    medians = {mode: statistics.median(s) if s else None for mode, s in epochs.items()}
    results = {
        "machine": common.machine(),
        "architecture": args.architecture,
        "images_per_epoch": args.images,
        "epoch_s_median": medians,
        "epoch_s_all": epochs,
        "speedup_two_over_one": (
            round(medians["one"] / medians["two"], 3) if all(medians.values()) else None
        ),
        "failed_processes": failures,
    }
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
