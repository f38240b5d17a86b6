"""The four architectures of the paper and their hyperparameters, as data.

Everything that depends on the architecture is read from `ARCHITECTURES`; the
builder below turns a list of layer specs into Keras layers.  The layers that
carry weights come in exactly the original release's order and shapes, so a
legacy Keras 2 weight file loads by order.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

from brainprop.model.rules import get_rule
from brainprop.utils.errors import BrainPropError

if TYPE_CHECKING:
    import keras

LayerSpec = tuple  # ("conv", filters, strides), ("dense", units), ("relu",), ...


def _conv_block(kind: str, filters: int, strides: int = 1) -> list[LayerSpec]:
    # BatchNorm comes after the ReLU everywhere, as in the original release.
    return [(kind, filters, strides), ("relu",), ("batchnorm",)]


def _shallow(kind: str) -> list[LayerSpec]:
    return [
        *_conv_block(kind, 32),
        *_conv_block(kind, 32, strides=2),
        ("dropout", 0.3),
        ("flatten",),
        ("dense", 500),
        ("relu",),
        ("dropout", 0.3),
    ]


_DEEP = [
    *_conv_block("conv", 64),
    *_conv_block("conv", 64),
    ("maxpool", 2),
    ("dropout", 0.3),
    *_conv_block("conv", 128),
    *_conv_block("conv", 128),
    ("maxpool", 2),
    ("dropout", 0.3),
    *_conv_block("conv", 128),
    *_conv_block("conv", 128),
    *_conv_block("conv", 128),
    ("maxpool", 2),
    ("dropout", 0.8),
    ("flatten",),
    ("dense", 500),
    ("relu",),
    ("dropout", 0.3),
]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One architecture: the layers (output layer excluded) and hyperparameters."""

    layers: tuple[LayerSpec, ...]
    batch_size: int
    learning_rate: float
    init_std: float
    l2: float
    padding: str


ARCHITECTURES: dict[str, Architecture] = {
    "dense": Architecture(
        layers=(
            ("flatten",),
            ("dense", 1500),
            ("relu",),
            ("dense", 1000),
            ("relu",),
            ("dense", 500),
            ("relu",),
        ),
        batch_size=128,
        learning_rate=0.1,
        init_std=0.01,
        l2=0.0,
        padding="valid",
    ),
    "conv": Architecture(tuple(_shallow("conv")), 128, 0.1, 0.005, 0.0, "same"),
    "loccon": Architecture(tuple(_shallow("loccon")), 32, 0.1, 0.005, 0.0, "valid"),
    "deep": Architecture(tuple(_DEEP), 128, 0.1, 0.005, 0.0005, "same"),
}

# The most values one weight may hold: TensorFlow's and XLA's kernels index tensors
# with 32-bit integers.
MAX_WEIGHT_SIZE = 2**31 - 1


def weight_sizes(architecture: str, input_shape: tuple[int, int, int],
                 n_classes: int) -> dict[str, int]:
    """The number of values of each weight (kernels, batch-norm statistics) of the network,
    by layer name, as `build_model` makes it; computed without Keras.

    BrainPropError, in one line, where the images are too small for the network (a
    convolution or pooling would leave no pixel).
    """
    arch = ARCHITECTURES[architecture]
    height, width, channels = input_shape
    features = None  # set once flattened
    sizes = {}
    for index, (kind, *args) in enumerate(arch.layers, start=1):
        name = f"{kind}_{index}"
        if kind in ("conv", "loccon"):
            filters, strides = args
            valid = kind == "loccon" or arch.padding == "valid"
            if valid and min(height, width) < 3:
                raise _too_small(architecture, input_shape, name, (height, width))
            height, width = (((n - 3) // strides + 1) if valid else -(-n // strides)
                             for n in (height, width))
            kernel = 9 * channels * filters
            sizes[name] = kernel * height * width if kind == "loccon" else kernel
            channels = filters
        elif kind == "maxpool":
            pool = args[0] if args else 2
            if min(height, width) < pool:
                raise _too_small(architecture, input_shape, name, (height, width))
            height, width = height // pool, width // pool
        elif kind == "batchnorm":
            sizes[name] = 4 * (features or channels)
        elif kind == "flatten":
            features = height * width * channels
        elif kind == "dense":
            sizes[name] = features * args[0]
            features = args[0]
    sizes["output"] = features * n_classes
    return sizes


def _too_small(architecture: str, input_shape: tuple, layer: str, size: tuple) -> BrainPropError:
    height, width, _ = input_shape
    return BrainPropError(
        f"{architecture} does not fit {height}x{width} images: its {layer} gets "
        f"{size[0]}x{size[1]} pixels, too few; use larger images or another network "
        f"(deep needs at least 8x8, conv and dense any size, loccon 5x5)"
    )


def check_input(architecture: str, input_shape: tuple[int, int, int], n_classes: int) -> None:
    """BrainPropError, in one line, unless `architecture` can be built for these images."""
    sizes = weight_sizes(architecture, input_shape, n_classes)
    layer, largest = max(sizes.items(), key=lambda item: item[1])
    if largest > MAX_WEIGHT_SIZE:
        height, width, _ = input_shape
        raise BrainPropError(
            f"{architecture} on {height}x{width} images: its {layer} would hold "
            f"{largest:.3g} weights, more than one tensor can ({MAX_WEIGHT_SIZE:.3g}); use "
            "smaller images or another network (conv or deep)"
        )


def _kernel_options(arch: Architecture) -> dict:
    """No bias; kernels drawn from N(0, init_std^2), with the architecture's L2."""
    import keras

    return {
        "use_bias": False,
        "kernel_initializer": keras.initializers.RandomNormal(0.0, arch.init_std),
        "kernel_regularizer": keras.regularizers.L2(arch.l2) if arch.l2 else None,
    }


def _make_layer(spec: LayerSpec, arch: Architecture, index: int) -> keras.layers.Layer:
    import keras

    from brainprop.utils.devices import replicated_batch_statistics
    from brainprop.nets.layers import (
        BatchNormalization, Conv2D, Dropout, LocallyConnected2D, MaxPooling2D)

    kind, *args = spec
    weights = _kernel_options(arch)
    name = f"{kind}_{index}"
    if kind == "conv":
        filters, strides = args
        return Conv2D(
            filters, 3, strides=strides, padding=arch.padding, name=name, **weights
        )
    if kind == "loccon":
        filters, strides = args
        return LocallyConnected2D(filters, 3, strides=strides, name=name, **weights)
    if kind == "dense":
        return keras.layers.Dense(args[0], name=name, **weights)
    simple = {
        "relu": lambda: keras.layers.ReLU(name=name),
        # Over the global batch when data-parallel, as on one device (then Keras'
        # composite runs; on one device TensorFlow's fused kernel).
        "batchnorm": lambda: BatchNormalization(
            name=name, synchronized=replicated_batch_statistics()
        ),
        "maxpool": lambda: MaxPooling2D(args[0] if args else 2, name=name),
        # Seeded as Keras seeds an unseeded Dropout (from Python's `random`, which
        # `keras.utils.set_random_seed` seeds): the same masks on TensorFlow and JAX, and
        # on PyTorch masks from the layer's own seed generator, whose state a backup
        # keeps, instead of torch's global generator (Keras 3.15's unseeded torch path),
        # which no backup keeps: a resumed run would drop other units.
        "dropout": lambda: Dropout(
            args[0] if args else 0.0, seed=random.randint(1, int(1e9)), name=name),
        "flatten": lambda: keras.layers.Flatten(name=name),
    }
    return simple[kind]()


def build_model(
    architecture: str,
    algorithm: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    seed: int = 1,
    batch_size: int | None = None,
    init_std: float | None = None,
) -> keras.Model:
    """Build the network as the original release did (uncompiled).

    The output layer is linear for every rule; the rule (`brainprop.model.rules`)
    makes the model around it.  BrainProp gets the `BrainProp` model class, whose
    loss is divided by `batch_size`, the batch size it will be trained with
    (default: the architecture's).  EBP gets a plain `keras.Model` whose outputs
    are the logits of the softmax (the release's softmax layer had no weights, so
    its files load unchanged, and the argmax is the same); `compile_model` gives it
    the cross-entropy of those logits.  `init_std` replaces the architecture's
    standard deviation of the initial weights.  Weight initialisation draws from
    Keras' global seed, so call `keras.utils.set_random_seed` first.
    """
    import keras

    rule = get_rule(algorithm)
    arch = ARCHITECTURES[architecture]
    if init_std is not None:
        arch = dataclasses.replace(arch, init_std=init_std)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for index, spec in enumerate(arch.layers, start=1):
        x = _make_layer(spec, arch, index)(x)
    # float32 under mixed precision too: the Q values (or logits) and the loss stay exact.
    output = keras.layers.Dense(n_classes, name="output", dtype="float32",
                                **_kernel_options(arch))(x)
    model = rule.build(inputs, output, name=f"{architecture}_{algorithm}", seed=seed,
                       batch_size=batch_size or arch.batch_size, epsilon=rule.epsilon)
    model.rule = rule.name  # what `compile_model` compiles it for
    return model


# Training and validation steps run per compiled call: the same steps in the same
# order (results are unchanged), with Keras' per-call work (callbacks, progress bar,
# the Python loop) done once per 16 batches instead of every batch.  On a loaded
# 2-core CPU this halved the wall time of an MNIST dense epoch (benchmarks/RESULTS.md);
# on a GPU, where a step takes milliseconds, that per-call work would dominate.
STEPS_PER_EXECUTION = 16


def compile_model(
    model: keras.Model,
    learning_rate: float,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = STEPS_PER_EXECUTION,
    rule: str | None = None,
) -> keras.Model:
    """Compile with plain SGD (no momentum) and the loss of the model's rule
    (`brainprop.model.rules`): BrainProp's own (`brainprop.model.attention_gated`), or for
    EBP the cross-entropy of the softmax of the outputs, computed from the logits,
    averaged over the batch (as the release's `categorical_crossentropy`).

    `rule` names the rule; by default the one `build_model` made `model` for.
    Every rule logs `class_accuracy`, the accuracy of each class (a vector per epoch).
    Callbacks see a batch end once per `steps_per_execution` batches (one
    under a TensorFlow strategy of several replicas, `devices.steps_per_call`).

    `jit_compile="auto"` is Keras' choice, and the faster one measured on CPU
    for every architecture (benchmarks/RESULTS.md): XLA on JAX (off would mean
    eager execution), no XLA for TensorFlow on CPU (XLA's CPU convolutions are
    several times slower). On a GPU Keras turns XLA on for TensorFlow too (not
    measured here: no GPU was available).
    """
    import keras

    from brainprop.nets.metrics import ClassAccuracy
    from brainprop.utils.compat import run_steps_per_execution_on_torch
    from brainprop.utils.devices import steps_per_call

    steps_per_execution = steps_per_call(steps_per_execution)
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0)
    per_class = ClassAccuracy(model.output_shape[-1])
    rule = get_rule(rule or getattr(model, "rule", ""))
    own_loss = rule.loss is None  # the model computes its loss and logs its "accuracy"
    model.compile(
        optimizer=optimizer,
        loss=None if own_loss else rule.loss(),
        metrics=[per_class] if own_loss else [rule.accuracy(), per_class],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    run_steps_per_execution_on_torch(model)
    return model
