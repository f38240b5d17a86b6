"""BatchNormalization forward and backward: Keras 3's layer against ours (fused on TensorFlow).

One `tf.function` (or `jax.jit`) per layer computes the output in training mode and the
gradients of the input, gamma and beta, on the activations of the conv networks
(batch 128: 32x32x32 after the first conv layer of `conv`, 32x32x64 of `deep`); the
layers take turns, the order rotating each step.

    KERAS_BACKEND=tensorflow python benchmarks/batchnorm.py
"""

from __future__ import annotations

import argparse

import common
import keras
import numpy as np

from brainprop.nets.layers import BatchNormalization

SHAPES = {"conv, first block": (128, 32, 32, 32), "deep, first block": (128, 32, 32, 64),
          "conv, second block": (128, 16, 16, 32)}


def step_function(layer, shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    layer.build(shape)
    if keras.backend.backend() == "jax":
        import jax

        def loss(x, trainable, non_trainable):
            y, _ = layer.stateless_call(trainable, non_trainable, x, training=True)
            return jax.numpy.sum(y * y)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        return lambda: jax.block_until_ready(grad(x, trainable, non_trainable))
    import tensorflow as tf

    x = tf.constant(x)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return lambda: [g.numpy() for g in step()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"machine": common.machine(), "ms": {}}
    for name, shape in SHAPES.items():
        common.progress(f"{name} {shape} ...")
        times = common.side_by_side(
            {"keras": step_function(keras.layers.BatchNormalization(), shape),
             "ours": step_function(BatchNormalization(), shape)},
            steps=args.steps, warmup=3)
        results["ms"][name] = {
            "shape": shape,
            "keras_ms": round(1000 * common.median(times["keras"]), 2),
            "ours_ms": round(1000 * common.median(times["ours"]), 2),
            "keras_over_ours": round(common.ratio(times, "keras", "ours"), 2),
        }
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
