"""The four architectures of the paper and their hyperparameters, as data.

Everything that depends on the architecture is read from `ARCHITECTURES`.  Each layer
an architecture lists is of one kind of `LAYER_KINDS`, which says both what the layer
makes of the images' shape and how many weights it holds (read here, without Keras, to
check a run's images before a backend starts) and which function makes its Keras layer
(read by `brainprop.nets.build`).  The layers that carry weights come in exactly the
original release's order and shapes, so a legacy Keras 2 weight file loads by order.

No Keras here: the command line checks a network against its images before a backend
starts.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, NamedTuple

from brainprop.utils.errors import BrainPropError

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
    """One architecture: its name, the layers (output layer excluded) and hyperparameters."""

    name: str  # the command line's word ("dense", ...)
    layers: tuple[LayerSpec, ...]
    batch_size: int
    learning_rate: float
    init_std: float
    l2: float
    padding: str


ARCHITECTURES: dict[str, Architecture] = {architecture.name: architecture for architecture in (
    Architecture(
        "dense",
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
    Architecture("conv", tuple(_shallow("conv")), 128, 0.1, 0.005, 0.0, "same"),
    Architecture("loccon", tuple(_shallow("loccon")), 32, 0.1, 0.005, 0.0, "valid"),
    Architecture("deep", tuple(_DEEP), 128, 0.1, 0.005, 0.0005, "same"),
)}


# --- the kinds of layer ---------------------------------------------------------------


class Shape(NamedTuple):
    """The images a layer gets: rows, columns, channels, and once flattened, features."""

    height: int
    width: int
    channels: int
    features: int | None = None


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """One kind of layer an architecture lists, as `(kind, *args)`.

    `shape(shape, args, architecture)` gives the shape of the layer's outputs and the
    number of values of its weights (None: it has none), without Keras; outputs of no
    row or no column mean the images are too small for it.  `layer` is the
    `"module:name"` of the function that makes its Keras layer,
    `make(args, name, architecture, kernel_options)` (`brainprop.nets.build`).
    """

    shape: Callable[[Shape, tuple, Architecture], tuple[Shape, int | None]]
    layer: str


def _windows(shape: Shape, args: tuple, valid: bool, shared: bool) -> tuple[Shape, int]:
    """3x3 windows (`filters`, `strides`), "valid" or "same"; one kernel for every
    output position (`shared`) or one each."""
    filters, strides = args
    height, width = (((n - 3) // strides + 1) if valid else -(-n // strides)
                     for n in (shape.height, shape.width))
    kernel = 9 * shape.channels * filters
    return Shape(height, width, filters), kernel if shared else kernel * height * width


def _conv(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, int]:
    return _windows(shape, args, valid=arch.padding == "valid", shared=True)


def _loccon(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, int]:
    return _windows(shape, args, valid=True, shared=False)  # Keras 2's: "valid" only


def _maxpool(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, None]:
    pool = args[0] if args else 2
    return shape._replace(height=shape.height // pool, width=shape.width // pool), None


def _batchnorm(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, int]:
    return shape, 4 * (shape.features or shape.channels)  # gamma, beta, mean, variance


def _flatten(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, None]:
    return shape._replace(features=shape.height * shape.width * shape.channels), None


def _dense(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, int]:
    return shape._replace(features=args[0]), shape.features * args[0]


def _same(shape: Shape, args: tuple, arch: Architecture) -> tuple[Shape, None]:
    return shape, None


_BUILD = "brainprop.nets.build"

LAYER_KINDS: dict[str, LayerKind] = {
    "conv": LayerKind(_conv, f"{_BUILD}:conv"),  # ("conv", filters, strides)
    "loccon": LayerKind(_loccon, f"{_BUILD}:loccon"),  # ("loccon", filters, strides)
    "dense": LayerKind(_dense, f"{_BUILD}:dense"),  # ("dense", units)
    "maxpool": LayerKind(_maxpool, f"{_BUILD}:maxpool"),  # ("maxpool", pool=2)
    "batchnorm": LayerKind(_batchnorm, f"{_BUILD}:batchnorm"),
    "relu": LayerKind(_same, f"{_BUILD}:relu"),
    "dropout": LayerKind(_same, f"{_BUILD}:dropout"),  # ("dropout", rate)
    "flatten": LayerKind(_flatten, f"{_BUILD}:flatten"),
}


def layer_name(spec: LayerSpec, index: int) -> str:
    """The Keras name of the `index`-th layer (from 1) of an architecture: `conv_1`."""
    return f"{spec[0]}_{index}"


# The most values one weight may hold: TensorFlow's and XLA's kernels index tensors
# with 32-bit integers.
MAX_WEIGHT_SIZE = 2**31 - 1


def weight_sizes(architecture: str, input_shape: tuple[int, int, int],
                 n_classes: int) -> dict[str, int]:
    """The number of values of each weight (kernels, batch-norm statistics) of the network,
    by layer name, as `brainprop.nets.build.build_model` makes it; computed without Keras.

    BrainPropError, in one line, where the images are too small for the network (a
    convolution or pooling would leave no pixel).
    """
    sizes, features, too_small = _walk(ARCHITECTURES[architecture], Shape(*input_shape))
    if too_small is not None:
        raise _too_small(architecture, input_shape, *too_small)
    return {**sizes, "output": features * n_classes}


def _walk(arch: Architecture, shape: Shape) -> tuple[dict[str, int], int, tuple | None]:
    """The weights' sizes by layer, the features of the last layer, and where the
    images are too small, the first layer that gets too few pixels and their size."""
    sizes = {}
    for index, (kind, *args) in enumerate(arch.layers, start=1):
        name = layer_name((kind,), index)
        out, size = LAYER_KINDS[kind].shape(shape, tuple(args), arch)
        if min(out.height, out.width) < 1:
            return sizes, 0, (name, (shape.height, shape.width))
        if size is not None:
            sizes[name] = size
        shape = out
    return sizes, shape.features, None


def _fits(architecture: str, input_shape: tuple[int, int, int]) -> bool:
    """Whether no layer of `architecture` leaves these images without a pixel."""
    return _walk(ARCHITECTURES[architecture], Shape(*input_shape))[2] is None


def smallest_side(architecture: str) -> int:
    """The side of the smallest square images `architecture` fits (1: any size)."""
    return next(side for side in itertools.count(1) if _fits(architecture, (side, side, 1)))


def _smallest_sizes() -> str:
    """`deep needs at least 8x8, loccon 5x5, dense and conv any size`, from the table."""
    sides = {name: smallest_side(name) for name in ARCHITECTURES}
    bounded = sorted((name for name in sides if sides[name] > 1), key=lambda n: -sides[n])
    parts = [f"{name} {sides[name]}x{sides[name]}" for name in bounded]
    if parts:
        parts[0] = parts[0].replace(" ", " needs at least ", 1)
    anywhere = [name for name in sides if sides[name] == 1]
    if anywhere:
        parts.append(f"{' and '.join(anywhere)} any size")
    return ", ".join(parts)


def _too_small(architecture: str, input_shape: tuple, layer: str, size: tuple) -> BrainPropError:
    height, width, _ = input_shape
    return BrainPropError(
        f"{architecture} does not fit {height}x{width} images: its {layer} gets "
        f"{size[0]}x{size[1]} pixels, too few; use larger images or another network "
        f"({_smallest_sizes()})"
    )


def _largest_weight(architecture: str, input_shape: tuple[int, int, int],
                    n_classes: int) -> tuple[str, int]:
    sizes = weight_sizes(architecture, input_shape, n_classes)
    return max(sizes.items(), key=lambda item: item[1])


def _networks_that_fit(input_shape: tuple[int, int, int], n_classes: int) -> list[str]:
    return [name for name in ARCHITECTURES if _fits(name, input_shape)
            and _largest_weight(name, input_shape, n_classes)[1] <= MAX_WEIGHT_SIZE]


def check_input(architecture: str, input_shape: tuple[int, int, int], n_classes: int) -> None:
    """BrainPropError, in one line, unless `architecture` can be built for these images."""
    layer, largest = _largest_weight(architecture, input_shape, n_classes)
    if largest > MAX_WEIGHT_SIZE:
        height, width, _ = input_shape
        others = _networks_that_fit(input_shape, n_classes)
        instead = f" or another network ({' or '.join(others)})" if others else ""
        raise BrainPropError(
            f"{architecture} on {height}x{width} images: its {layer} would hold "
            f"{largest:.3g} weights, more than one tensor can ({MAX_WEIGHT_SIZE:.3g}); use "
            f"smaller images{instead}"
        )
