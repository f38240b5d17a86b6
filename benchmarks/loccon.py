"""Locally connected layers at a practical speed.

Four measurements, each side by side in one process:

* layer: our LocallyConnected2D (the CIFAR loccon's two layer shapes) trained alone
  through Keras; on TensorFlow beside Keras 2's `LocallyConnected2D(implementation=1)`
  from tf-keras (the other formulations once measured here are described, with their
  figures, in benchmarks/RESULTS.md);
* keras2 (TensorFlow only): our layer against Keras 2's on the same shapes, the layer's
  own work only: forward and the gradients the network needs, in one `tf.function`;
  beside them the matrix products alone (windows cut beforehand), the work any
  implementation must do, as a floor;
* networks: the loccon network against the conv network at the same batch size, and
  (TensorFlow) against the same loccon network built from Keras 2's layer;
* memory: peak resident memory of loccon training at batch 32 and 128, each in a
  fresh process (`--memory-child` is that process).

    KERAS_BACKEND=tensorflow python benchmarks/loccon.py --json loccon_tf.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import common
import numpy as np

# (input shape, strides, whether a BatchNormalization comes first).  In the network the
# second layer follows a BatchNormalization, so its input gradient is computed too.
LAYER_SHAPES = {
    "loccon_1": ((32, 32, 3), 1, False),
    "loccon_2": ((30, 30, 32), 2, True),
}
FILTERS = 32
PARTS = ["layer", "keras2", "networks", "memory"]


def _one_layer_model(layer_class, shape, strides, batchnorm, jit_compile):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.BatchNormalization()(inputs) if batchnorm else inputs
    layer = layer_class(FILTERS, 3, strides=strides, use_bias=False,
                        kernel_initializer="zeros")
    model = keras.Model(inputs, layer(x))
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    return model


def _keras2_one_layer_model(shape, strides, batchnorm):
    import tf_keras

    inputs = tf_keras.Input(shape)
    x = tf_keras.layers.BatchNormalization()(inputs) if batchnorm else inputs
    layer = tf_keras.layers.LocallyConnected2D(
        FILTERS, 3, strides=strides, implementation=1, use_bias=False
    )
    model = tf_keras.Model(inputs, layer(x))
    model.compile(optimizer="sgd", loss="mse")
    return model


def layer_alone(batch: int, steps: int, warmup: int, jit_compile) -> dict:
    """ms per `train_on_batch` of a one-layer model: ours, and (TensorFlow) Keras 2's."""
    import keras

    from brainprop.nets.layers import LocallyConnected2D

    results = {}
    for name, (shape, strides, batchnorm) in LAYER_SHAPES.items():
        common.progress(f"layer, {name} ...")
        models = {
            "ours": _one_layer_model(LocallyConnected2D, shape, strides, batchnorm, jit_compile)
        }
        if keras.backend.backend() == "tensorflow":
            models["Keras 2 implementation=1"] = _keras2_one_layer_model(
                shape, strides, batchnorm
            )
        x, _ = common.synthetic_batch(shape, batch)
        target = np.zeros((batch, *models["ours"].output_shape[1:]), "float32")
        times = common.side_by_side(
            {k: (lambda m=m, x=x, target=target: m.train_on_batch(x, target))
             for k, m in models.items()},
            steps, warmup,
        )
        results[name] = {k: round(1000 * common.median(t), 2) for k, t in times.items()}
    return results


def keras2_layers(batches: list[int], steps: int, warmup: int) -> dict:
    """ms per forward + gradients of each loccon layer: Keras 2's and ours, interleaved.

    The gradients are those training needs: the kernel's, and for the second layer
    (which follows a BatchNormalization in the network) the input's too.
    """
    import tensorflow as tf
    import tf_keras

    from brainprop.nets.layers import LocallyConnected2D, window_patches

    def step_of(layer, kernel, with_input_gradient):
        @tf.function
        def step(x, upstream):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) * upstream)
            sources = [x, kernel] if with_input_gradient else [kernel]
            return tape.gradient(loss, sources)

        return step

    def matmuls_of(layer, x, with_input_gradient):
        """The products both layers must compute, on windows cut beforehand: a floor."""
        rows, cols = layer.compute_output_shape(x.shape)[1:3]
        patches = window_patches(x, layer.kernel_size, layer.strides, (rows, cols))
        kernel = layer.kernel.value

        @tf.function
        def step(_, upstream):
            upstream = tf.transpose(
                tf.reshape(upstream, (-1, rows * cols, layer.filters)), (1, 0, 2)
            )
            products = [tf.matmul(patches, kernel),
                        tf.matmul(patches, upstream, adjoint_a=True)]
            if with_input_gradient:
                products.append(tf.matmul(upstream, kernel, adjoint_b=True))
            return products

        return step

    results = {}
    for batch in batches:
        common.progress(f"keras2, batch {batch} ...")
        row = {}
        for name, (shape, strides, with_input_gradient) in LAYER_SHAPES.items():
            ours = LocallyConnected2D(FILTERS, 3, strides=strides)
            keras2 = tf_keras.layers.LocallyConnected2D(
                FILTERS, 3, strides=strides, implementation=1, use_bias=False
            )
            for layer in (ours, keras2):
                layer.build((None, *shape))
            x, _ = common.synthetic_batch(shape, batch)
            x = tf.constant(x)
            out_shape = ours.compute_output_shape(x.shape)
            upstream = tf.constant(np.random.default_rng(1).random(out_shape, "float32"))
            steps_ = {
                "ours": step_of(ours, ours.kernel.value, with_input_gradient),
                "Keras 2": step_of(keras2, keras2.kernel, with_input_gradient),
                "matmuls only": matmuls_of(ours, x, with_input_gradient),
            }
            times = common.side_by_side(
                {k: (lambda f=f, x=x, upstream=upstream: [g.numpy() for g in f(x, upstream)])
                 for k, f in steps_.items()},
                steps, warmup,
            )
            row[name] = {
                "median_ms": {k: round(1000 * common.median(t), 2) for k, t in times.items()},
                "keras2_over_ours": round(common.ratio(times, "Keras 2", "ours"), 2),
                "keras2_over_matmuls_only": round(
                    common.ratio(times, "Keras 2", "matmuls only"), 2
                ),
            }
        layers = list(row.values())
        row["both layers"] = {
            key: round(sum(r["median_ms"][a] for r in layers)
                       / sum(r["median_ms"][b] for r in layers), 2)
            for key, a, b in [("keras2_over_ours", "Keras 2", "ours"),
                              ("keras2_over_matmuls_only", "Keras 2", "matmuls only")]
        }
        results[batch] = row
    return results


def _keras2_loccon_network():
    """The loccon EBP network built from Keras 2 layers, as the original release did."""
    import tf_keras

    init = tf_keras.initializers.RandomNormal(0.0, 0.005)
    layers = tf_keras.layers
    model = tf_keras.Sequential([
        tf_keras.Input(common.INPUT_SHAPES["loccon"]),
        layers.LocallyConnected2D(32, 3, implementation=1, use_bias=False,
                                  kernel_initializer=init),
        layers.ReLU(), layers.BatchNormalization(),
        layers.LocallyConnected2D(32, 3, strides=2, implementation=1, use_bias=False,
                                  kernel_initializer=init),
        layers.ReLU(), layers.BatchNormalization(), layers.Dropout(0.3), layers.Flatten(),
        layers.Dense(500, use_bias=False, kernel_initializer=init), layers.ReLU(),
        layers.Dropout(0.3),
        layers.Dense(common.N_CLASSES, use_bias=False, activation="softmax",
                     kernel_initializer=init),
    ])
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy")
    return model


def networks(batch: int, steps: int, warmup: int, jit_compile) -> dict:
    """loccon / conv (BrainProp and EBP), and Keras 2's loccon / ours (EBP)."""
    import keras
    from train_step import build

    x, y = common.synthetic_batch(common.INPUT_SHAPES["loccon"], batch)
    models = {
        f"{arch} {algorithm}": build(arch, algorithm, jit_compile)
        for arch in ("loccon", "conv")
        for algorithm in ("BrainProp", "EBP")
    }
    if keras.backend.backend() == "tensorflow":
        models["Keras 2 loccon EBP"] = _keras2_loccon_network()
    common.progress(f"networks, batch {batch} ...")
    times = common.side_by_side(
        {k: (lambda m=m: m.train_on_batch(x, y)) for k, m in models.items()}, steps, warmup
    )
    result = {
        "batch": batch,
        "median_ms": {k: round(1000 * common.median(t), 2) for k, t in times.items()},
        "loccon_over_conv": {
            a: round(common.ratio(times, f"loccon {a}", f"conv {a}"), 3)
            for a in ("BrainProp", "EBP")
        },
    }
    if "Keras 2 loccon EBP" in times:
        result["keras2_over_ours"] = round(
            common.ratio(times, "Keras 2 loccon EBP", "loccon EBP"), 2
        )
    return result


def _peak_rss_mib() -> float:
    # VmHWM starts afresh in a new process; ru_maxrss would keep the parent's peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(batch: int, steps: int) -> None:
    """Train the loccon BrainProp network a few steps; print peak RSS in MiB."""
    from train_step import build

    model = build("loccon", "BrainProp", _jit(os.environ["BENCH_JIT"]))
    x, y = common.synthetic_batch(common.INPUT_SHAPES["loccon"], batch)
    before = _peak_rss_mib()
    for _ in range(steps):
        model.train_on_batch(x, y)
    after = _peak_rss_mib()
    print(f"{before:.0f} {after:.0f}")


def memory(batches: list[int], jit: str) -> dict:
    results = {}
    for batch in batches:
        common.progress(f"memory, batch {batch} ...")
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(batch)],
            env={**os.environ, "BENCH_JIT": jit}, capture_output=True, text=True,
            check=True,
        ).stdout.split()
        before, after = float(out[-2]), float(out[-1])
        results[batch] = {"peak_rss_mib_before_training": before,
                          "peak_rss_mib_after_5_steps": after,
                          "training_adds_mib": after - before}
    return results


def _jit(text: str):
    return {"on": True, "off": False, "default": "auto"}[text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--jit", choices=["on", "off", "default"], default="default",
                        help="jit_compile of our models (default: the project's default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, 5)
        return
    jit = _jit(args.jit)
    results = {
        "machine": common.machine(), "steps": args.steps, "warmup": args.warmup,
        "jit": args.jit,
    }
    if "layer" in args.parts:
        results["layer_ms_batch32"] = layer_alone(32, args.steps, args.warmup, jit)
    if "keras2" in args.parts and results["machine"]["backend"] == "tensorflow":
        results["keras2_layers"] = keras2_layers(args.batches, args.steps, args.warmup)
    if "networks" in args.parts:
        results["networks"] = [networks(b, args.steps, args.warmup, jit) for b in args.batches]
    if "memory" in args.parts:
        results["memory"] = memory(args.batches, args.jit)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
