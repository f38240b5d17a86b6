"""The networks built and compiled as the original release did, from their entries in
`brainprop.nets.architectures.ARCHITECTURES` and a rule of `brainprop.model.rules`.

Each layer an architecture lists is made by the function its kind names
(`LAYER_KINDS[kind].layer`, one of those below); the output layer is linear for every
rule, and the rule makes the model around it.
"""

from __future__ import annotations

import random

import keras

from brainprop.model.pathway import Pathway
from brainprop.model.rules import Rule
from brainprop.nets.architectures import LAYER_KINDS, Architecture, layer_name
from brainprop.nets.layers import (
    BatchNormalization,
    Conv2D,
    Dropout,
    LocallyConnected2D,
    MaxPooling2D,
)
from brainprop.nets.metrics import ClassAccuracy
from brainprop.utils.compat import run_steps_per_execution_on_torch
from brainprop.utils.devices import replicated_batch_statistics, steps_per_call
from brainprop.utils.exports import resolve


def kernel_options(arch: Architecture) -> dict:
    """No bias; kernels drawn from N(0, init_std^2), with the architecture's L2.

    The initializer draws its seed from Python's `random` when it is made: one is made
    for every layer, weighted or not, in the layers' order (`build_model`), so that a
    seed gives the same weights and dropout masks as it always has.
    """
    return {
        "use_bias": False,
        "kernel_initializer": keras.initializers.RandomNormal(0.0, arch.init_std),
        "kernel_regularizer": keras.regularizers.L2(arch.l2) if arch.l2 else None,
    }


# --- the Keras layer of each kind: make(args, name, architecture, kernel options) ----------


def conv(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    filters, strides = args
    return Conv2D(filters, 3, strides=strides, padding=arch.padding, name=name, **weights)


def loccon(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    filters, strides = args
    return LocallyConnected2D(filters, 3, strides=strides, name=name, **weights)


def dense(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    return keras.layers.Dense(args[0], name=name, **weights)


def relu(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    return keras.layers.ReLU(name=name)


def batchnorm(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    # Over the global batch when data-parallel, as on one device (then Keras' composite
    # runs; on one device the backend's fused kernel).
    return BatchNormalization(name=name, synchronized=replicated_batch_statistics())


def maxpool(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    return MaxPooling2D(args[0] if args else 2, name=name)


def dropout(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    # Seeded as Keras seeds an unseeded Dropout (from Python's `random`, which
    # `keras.utils.set_random_seed` seeds): the same masks on TensorFlow and JAX, and
    # on PyTorch masks from the layer's own seed generator, whose state a backup
    # keeps, instead of torch's global generator (Keras 3.15's unseeded torch path),
    # which no backup keeps: a resumed run would drop other units.
    return Dropout(args[0] if args else 0.0, seed=random.randint(1, int(1e9)), name=name)


def flatten(args: tuple, name: str, arch: Architecture, weights: dict) -> keras.layers.Layer:
    return keras.layers.Flatten(name=name)


# --- building and compiling -----------------------------------------------------------


def build_model(
    architecture: Architecture,
    rule: Rule,
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    seed: int = 1,
    batch_size: int | None = None,
) -> keras.Model:
    """Build the network of `architecture` for `rule` as the original release did
    (uncompiled), named `<architecture>_<rule>`.

    The output layer is linear for every rule; `rule.model` makes the model around it.
    BrainProp gets the `BrainProp` model class, whose loss is divided by `batch_size`,
    the batch size it will be trained with (default: the architecture's).  EBP gets a
    plain `keras.Model` whose outputs are the logits of the softmax
    (`brainprop.model.backprop`); `compile_model` gives it the cross-entropy of those
    logits.  The weight layers send the learning signal down through the feedback
    of `rule.feedback` (`brainprop.model.pathway`; with "symmetric", the paper's, the
    network is built as it always was).  `seed` seeds the rule's own draws and the
    feedback weights'.  Weight initialisation draws from
    Keras' global seed, so call `keras.utils.set_random_seed` first.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    pathway = Pathway(rule.feedback, seed)
    x = inputs
    for index, (kind, *args) in enumerate(architecture.layers, start=1):
        make = resolve(LAYER_KINDS[kind].layer)
        weights = kernel_options(architecture)
        x = pathway(make(tuple(args), layer_name((kind,), index), architecture, weights), x)
    # float32 under mixed precision too: the Q values (or logits) and the loss stay exact.
    output = pathway(keras.layers.Dense(n_classes, name="output", dtype="float32",
                                        **kernel_options(architecture)), x)
    output = pathway.finish(output)
    return resolve(rule.model)(
        inputs, output, name=f"{architecture.name}_{rule.name}", seed=seed,
        batch_size=batch_size or architecture.batch_size, epsilon=rule.epsilon)


# Training and validation steps run per compiled call: the same steps in the same
# order (results are unchanged), with Keras' per-call work (callbacks, progress bar,
# the Python loop) done once per 16 batches instead of every batch.  On a loaded
# 2-core CPU this halved the wall time of an MNIST dense epoch (benchmarks/RESULTS.md);
# on a GPU, where a step takes milliseconds, that per-call work would dominate.
STEPS_PER_EXECUTION = 16


def compile_model(
    model: keras.Model,
    rule: Rule,
    learning_rate: float,
    *,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = STEPS_PER_EXECUTION,
) -> keras.Model:
    """Compile `model` for `rule` with plain SGD (no momentum) and the rule's loss
    (`brainprop.model.rules`): BrainProp's own (`brainprop.model.attention_gated`), or for
    EBP the cross-entropy of the softmax of the outputs, computed from the logits,
    averaged over the batch (as the release's `categorical_crossentropy`).

    Every rule logs `class_accuracy`, the accuracy of each class (a vector per epoch).
    Callbacks see a batch end once per `steps_per_execution` batches (one
    under a TensorFlow strategy of several replicas, `devices.steps_per_call`).

    `jit_compile="auto"` is Keras' choice, and the faster one measured on CPU
    for every architecture (benchmarks/RESULTS.md): XLA on JAX (off would mean
    eager execution), no XLA for TensorFlow on CPU (XLA's CPU convolutions are
    several times slower). On a GPU Keras turns XLA on for TensorFlow too (not
    measured here: no GPU was available).
    """
    steps_per_execution = steps_per_call(steps_per_execution)
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0)
    per_class = ClassAccuracy(model.output_shape[-1])
    own_loss = rule.loss is None  # the model computes its loss and logs its "accuracy"
    model.compile(
        optimizer=optimizer,
        loss=None if own_loss else resolve(rule.loss)(),
        metrics=[per_class] if own_loss else [resolve(rule.accuracy)(), per_class],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    run_steps_per_execution_on_torch(model)
    return model
