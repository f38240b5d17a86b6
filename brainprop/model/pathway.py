"""The feedback pathway: any kind of feedback (`brainprop.model.feedback`) applied to any
weight layer of a functional network, inside the compiled training step.

A weight layer computes y = f(x, W) (+ bias, activation) with f linear in its kernel: a
matrix product (Dense), a convolution (Conv1D/2D/3D, any padding and strides), one matrix
product per position (LocallyConnected2D).  With feedback weights B the network computes

    y = layer(stop_gradient(x)) + s(x, B),

whose value is the layer's own (s is zero), whose gradient for W is the layer's own (the
signal arriving at y times x), and whose signal passed down to x is f's transpose applied
with B instead of W: s's gradient (`FeedbackPath.send_down`) is that of z = f(x, B), taken
without computing z itself.  B is a constant of the step (stop_gradient), except for a
learned B, whose gradient from s is then W's: the same signal times the same input.
Direct feedback cuts every layer's path down (each layer sees stop_gradient(x)) and adds
to the network's output, again at zero value,

    sum over layers l of  t_l - stop_gradient(t_l),    t_l = flatten(x_l) @ D_l,

so that the signal arriving at the output (for BrainProp: the chosen unit's
reward-prediction error, and nothing at the other units) reaches each layer's input x_l
through its own fixed matrix D_l, and from there the layer below through its activation.

No hooks: `keras.ops` (its `custom_gradient` for s) and the backend's own vector-Jacobian
product (`brainprop.utils.gradients.pullback`), so the same step is compiled on TensorFlow,
JAX and PyTorch.  The feedback weights are variables of layers of the model
(`FeedbackPath`, `DirectFeedback`): saved with the weights and in backups.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from brainprop.model.feedback import FeedbackKind, get_feedback
from brainprop.utils.compat import producer
from brainprop.utils.errors import BrainPropError
from brainprop.utils.gradients import pullback

CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
# Weights that act elementwise, not on the signal's path between units: their own
# gradient is kept, whatever the feedback.
ELEMENTWISE = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
               keras.layers.GroupNormalization)


class LinearMap:
    """A weight layer's linear map f(x, K): its forward pass with kernel K, before bias and
    activation.  A layer of our own names its map with a `linear_map(inputs, kernel)`
    method and its weights `kernel` (as `brainprop.nets.layers.LocallyConnected2D`)."""

    def __init__(self, layer: keras.layers.Layer) -> None:
        self.layer = layer

    @property
    def kernel(self) -> keras.Variable:
        return self.layer.kernel

    def __call__(self, inputs: Any, kernel: Any) -> Any:
        if hasattr(self.layer, "linear_map"):
            return self.layer.linear_map(inputs, kernel)
        if isinstance(self.layer, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        return self.layer.convolution_op(inputs, kernel)

    def transpose(self, inputs: Any, kernel: Any, upstream: Any, learned: bool) -> tuple:
        """f's transpose with `kernel` applied to `upstream` (the signal for `inputs`), and
        for a learned kernel its gradient, `upstream` times `inputs` (else None)."""
        # Eager PyTorch computes a function forward to differentiate it: there, a map's
        # own transpose where it has one (TensorFlow's graph and XLA skip that forward).
        if keras.backend.backend() == "torch":
            if hasattr(self.layer, "linear_map_transpose"):
                return self.layer.linear_map_transpose(inputs, kernel, upstream, learned)
            if isinstance(self.layer, keras.layers.Dense):
                to_inputs = ops.matmul(upstream, ops.transpose(kernel))
                if not learned:
                    return to_inputs, None
                flat_inputs = ops.reshape(inputs, (-1, inputs.shape[-1]))
                flat_upstream = ops.reshape(upstream, (-1, upstream.shape[-1]))
                return to_inputs, ops.matmul(ops.transpose(flat_inputs), flat_upstream)
        if learned:
            return tuple(pullback(self, [inputs, kernel], upstream))
        return pullback(lambda x: self(x, kernel), [inputs], upstream)[0], None


def serves(layer: keras.layers.Layer) -> bool:
    """Whether `layer` is a weight layer whose signal a feedback pathway can send down."""
    if isinstance(layer, keras.layers.Dense):
        return not getattr(layer, "quantization_mode", None)
    return hasattr(layer, "linear_map") or isinstance(layer, CONVOLUTIONS)


def check_served(layer: keras.layers.Layer, kind: FeedbackKind) -> None:
    """BrainPropError naming a layer with weights on the signal's path that `kind` cannot
    serve; nothing for one without weights, or with a normalisation's."""
    if not layer.weights or isinstance(layer, ELEMENTWISE) or serves(layer):
        return
    raise BrainPropError(
        f"--feedback {kind.name} cannot serve the {type(layer).__name__} layer {layer.name!r}: "
        "it serves Dense, Conv1D, Conv2D, Conv3D and LocallyConnected2D layers (normalisation "
        "layers keep their own gradient); use --feedback symmetric for this network"
    )


def _draw(shape: tuple[int, ...], std: float, seed: tuple[int, int]) -> np.ndarray:
    """Normal values, the same on every backend for the same seed."""
    return (np.random.default_rng(seed).standard_normal(shape) * std).astype("float32")


def starting_values(kernel: np.ndarray, shape: tuple[int, ...], kind: FeedbackKind,
                    seed: tuple[int, int]) -> np.ndarray:
    """The stored feedback weights at the start, from the layer's initial kernel."""
    if kind.start == "scale":
        return np.asarray(np.mean(np.abs(kernel)), "float32")
    return _draw(shape, float(np.std(kernel)), seed)


def feedback_weights(kind: FeedbackKind, kernel: Any, stored: Any) -> Any:
    """B this step, from W (`kernel`) and what is stored."""
    if kind.step == "sign":
        return ops.sign(kernel) * stored
    return stored


def anchor(*tensors: Any) -> Any:
    """A float32 zero computed from one value of each of `tensors`: what makes a tensor an
    input of a forward value at the cost of reading one number of it."""
    return sum(ops.cast(ops.reshape(tensor, (-1,))[0], "float32") * 0 for tensor in tensors)


def weight_decay(rate: float, *weights: Any) -> Any:
    """A float32 zero to add to the loss, whose gradient for each of `weights` is `rate`
    times it: the gradient of the penalty rate/2 * sum(w^2), and so each step's update
    takes learning rate * rate of each weight, without the penalty's value (the loss
    logged leaves it out) or the full-sized temporaries of its gradient."""

    @ops.custom_gradient
    def term(*weights: Any) -> tuple:
        def backward(*args: Any, upstream: Any = None) -> tuple:
            upstream = args[0] if upstream is None else upstream
            return tuple(weight * ops.cast(rate * upstream, weight.dtype) for weight in weights)

        return anchor(*weights), backward

    # Their values, not the variables: a read of each (cast to their own dtype), as a tensor.
    return term(*(ops.cast(weight, weight.dtype) for weight in weights))


@keras.saving.register_keras_serializable(package="brainprop")
class FeedbackPath(keras.layers.Layer):
    """A weight layer's signal passed down through feedback weights B: called on the layer's
    input x and output y, it returns y (the same values) with the signal for x sent through
    B.  The layer itself must be called on `stop_gradient(x)` (`Pathway` does both).

    Weights: `feedback`, B (W's shape), or for sign symmetry its magnitude (a scalar);
    trainable only when learned (Kolen-Pollack), with W's regularizer.  Saved in a
    `.keras` file as its kind; loaded, it serves the layer whose output it is called on,
    and its weights start at zero until the file's are loaded into them.
    """

    feeds_back = True  # its weights are not the network's own (legacy weight files)

    def __init__(self, linear: LinearMap | None, kind: FeedbackKind,
                 initial: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.linear = linear
        self.kind = kind
        self.initial = initial

    def __call__(self, inputs: Any, outputs: Any, **kwargs: Any) -> Any:
        if self.linear is None:  # rebuilt from its config: the layer that made `outputs`
            self.linear = LinearMap(producer(outputs)[0])
        return super().__call__(inputs, outputs, **kwargs)

    def build(self, inputs_shape: Any, outputs_shape: Any) -> None:
        if self.initial is None:
            shape = () if self.kind.start == "scale" else tuple(self.linear.kernel.shape)
            initializer = "zeros"
        else:
            shape = self.initial.shape
            initializer = lambda shape, dtype: ops.cast(self.initial, dtype)  # noqa: E731
        self.feedback = self.add_weight(
            name="feedback", shape=shape, initializer=initializer, trainable=self.kind.learned,
            regularizer=(getattr(self.linear.kernel, "regularizer", None) if self.kind.learned
                         else None),
        )

    def get_build_config(self) -> None:
        """None: loaded, it is built when called, once the layer it serves is known."""

    def call(self, inputs: Any, outputs: Any) -> Any:
        kernel = self.linear.kernel
        feedback = feedback_weights(self.kind, kernel, self.feedback)
        if self.kind.learned:
            if self.kind.decay:
                self.add_loss(weight_decay(self.kind.decay, kernel, self.feedback))
        else:
            feedback = ops.stop_gradient(feedback)
        signal = self.send_down(inputs, ops.cast(feedback, inputs.dtype), outputs)
        return outputs + ops.cast(signal, outputs.dtype)

    def send_down(self, inputs: Any, feedback: Any, outputs: Any) -> Any:
        """Zeros of `outputs`' shape, whose gradient sends the signal arriving at them down
        to `inputs` through f's transpose with `feedback` (B), and, for a learned B, to B
        (the signal times the input, as W's).  f's forward value is never computed: only
        its gradient is used, so that each step costs the pathway one convolution (or
        product) per layer, two for a learned B, on top of the network's own."""

        @ops.custom_gradient
        def sent(inputs: Any, feedback: Any) -> tuple:
            def backward(*args: Any, upstream: Any = None) -> tuple:
                upstream = args[0] if upstream is None else upstream
                to_inputs, to_feedback = self.linear.transpose(inputs, feedback, upstream,
                                                                self.kind.learned)
                return to_inputs, ops.zeros_like(feedback) if to_feedback is None else to_feedback

            # B enters the forward value (one number of it, times zero): on TensorFlow,
            # with B read only by the backward pass, a process's first training with a
            # learned B came out unlike its later ones (tests/test_pathway.py: two
            # trainings of one seed).
            zeros = ops.zeros(ops.shape(outputs), inputs.dtype)
            return zeros + ops.cast(anchor(feedback), inputs.dtype), backward

        return sent(inputs, feedback)

    def compute_output_shape(self, inputs_shape: Any, outputs_shape: Any) -> Any:
        return outputs_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind.name, "decay": self.kind.decay,
                "forward_layer": self.linear.layer.name}

    @classmethod
    def from_config(cls, config: dict) -> FeedbackPath:
        config = dict(config)
        config.pop("forward_layer", None)  # found again from the graph, when called
        kind = get_feedback(config.pop("kind"))
        kind = dataclasses.replace(kind, decay=config.pop("decay", kind.decay))
        return cls(None, kind, **config)


@keras.saving.register_keras_serializable(package="brainprop")
class DirectFeedback(keras.layers.Layer):
    """Direct feedback: called on the network's outputs and the inputs of its weight
    layers, it returns the outputs (the same values), with the signal arriving at them sent
    to each of those inputs through a fixed matrix `direct_<i>` of its own,
    (input units, output units)."""

    feeds_back = True  # its weights are not the network's own (legacy weight files)

    def __init__(self, initial: list[np.ndarray] | None = None, **kwargs: Any) -> None:
        kwargs.pop("matrices", None)  # from a config: their shapes come from the call
        super().__init__(**kwargs)
        self.initial = initial

    def build(self, outputs_shape: Any, hidden_shape: Any) -> None:
        # From a config (no starting values): zeros, until the file's weights are loaded.
        initial = self.initial or [
            np.zeros((math.prod(shape[1:]), outputs_shape[-1]), "float32")
            for shape in hidden_shape
        ]
        self.matrices = [
            self.add_weight(name=f"direct_{index}", shape=values.shape, trainable=False,
                            initializer=lambda shape, dtype, values=values: ops.cast(values,
                                                                                     dtype))
            for index, values in enumerate(initial, 1)
        ]
        self.initial = initial

    def call(self, outputs: Any, hidden: list) -> Any:
        total = None
        for inputs, matrix in zip(hidden, self.matrices, strict=True):
            flat = ops.reshape(ops.cast(inputs, outputs.dtype), (ops.shape(inputs)[0], -1))
            signal = ops.matmul(flat, ops.stop_gradient(ops.cast(matrix, outputs.dtype)))
            total = signal if total is None else total + signal
        return outputs + (total - ops.stop_gradient(total))

    def compute_output_shape(self, outputs_shape: Any, hidden_shape: Any) -> Any:
        return outputs_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "matrices": len(self.initial)}


@keras.saving.register_keras_serializable(package="brainprop")
class StopSignal(keras.layers.Layer):
    """Its input, through which no learning signal passes (`stop_gradient`)."""

    def call(self, inputs: Any) -> Any:
        return ops.stop_gradient(inputs)


def _is_input(tensor: Any) -> bool:
    return isinstance(producer(tensor)[0], keras.layers.InputLayer)


class Pathway:
    """Connects the layers of one network with a kind of feedback, as they are called.

    `pathway(layer, x)` calls `layer` on `x` and returns its output, for a weight layer
    with the learning signal sent down through its feedback weights; `pathway.finish(y)`
    ends the network at output `y`.  With `symmetric` both are the plain calls: the graph
    is the one built without feedback.  `seed` seeds the feedback weights' draws (with
    NumPy: the same on every backend), layer by layer.
    """

    def __init__(self, feedback: str | FeedbackKind, seed: int | None = None) -> None:
        self.kind = get_feedback(feedback)
        self.seed = 0 if seed is None else seed
        self.hidden: list = []  # direct: the inputs of the weight layers, and their kernels
        self.count = 0

    def __call__(self, layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        if self.kind.tied:
            return layer(*args, **kwargs)
        if not serves(layer):
            outputs = layer(*args, **kwargs)
            check_served(layer, self.kind)
            return outputs
        inputs, *others = args
        if not layer.built:
            # B starts from the kernel's initial values: the layer is built before its call.
            layer.build(tuple(inputs.shape))
        linear = LinearMap(layer)
        self.count += 1
        outputs = layer(StopSignal(name=f"{layer.name}_stop")(inputs), *others, **kwargs)
        if self.kind.direct:
            if not _is_input(inputs):
                self.hidden.append((inputs, ops.convert_to_numpy(linear.kernel)))
            return outputs
        kernel = ops.convert_to_numpy(linear.kernel)
        initial = starting_values(kernel, kernel.shape, self.kind, (self.seed, self.count))
        path = FeedbackPath(linear, self.kind, initial, name=f"{layer.name}_feedback",
                            dtype=layer.dtype_policy)
        return path(inputs, outputs)

    def finish(self, outputs: Any) -> Any:
        """The network's output: for direct feedback, with the signal sent to every layer."""
        if not (self.kind.direct and self.hidden):
            return outputs
        classes = outputs.shape[-1]
        initial = [
            starting_values(kernel, (math.prod(inputs.shape[1:]), classes), self.kind,
                            (self.seed, index))
            for index, (inputs, kernel) in enumerate(self.hidden, 1)
        ]
        hidden = [inputs for inputs, _ in self.hidden]
        return DirectFeedback(initial, name="direct_feedback")(outputs, hidden)


def with_feedback(model: keras.Model, feedback: str | FeedbackKind,
                  seed: int | None = None) -> keras.Model:
    """`model` (a functional model of one output) with every weight layer sending the
    learning signal down through feedback weights of kind `feedback`: a new functional
    model sharing every layer, and so every weight, with `model`.  `symmetric` returns
    `model` itself.

    Raises:
        BrainPropError: an unknown kind, a model without a graph of layers, more than one
            output, or a layer with weights the feedback cannot serve (naming it).
    """
    pathway = Pathway(feedback, seed)
    if pathway.kind.tied:
        return model
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs"):
        raise BrainPropError(
            f"--feedback {pathway.kind.name} needs a functional network (built on "
            f"keras.Input); {getattr(model, 'name', model)!r} has no graph of layers"
        )
    if len(model.outputs) != 1:
        raise BrainPropError(
            f"--feedback {pathway.kind.name} takes a network of one output; "
            f"{model.name!r} has {len(model.outputs)}"
        )
    clone = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                     call_function=pathway)
    return keras.Model(clone.inputs, pathway.finish(clone.outputs[0]), name=model.name)


def layers_of(model: keras.Model):
    """Every layer of `model`, those inside its layers (nested models) included, depth
    first."""
    for layer in model.layers:
        yield layer
        if getattr(layer, "layers", None):
            yield from layers_of(layer)


def has_feedback(model: keras.Model) -> bool:
    """Whether `model` sends a learning signal through feedback weights (any kind but
    `symmetric`)."""
    return any(getattr(layer, "feeds_back", False) for layer in layers_of(model))


def _exact(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
    """A layer's call in the network without feedback: the feedback layers let their
    forward value through (which is the weight layer's own), the rest are called."""
    if isinstance(layer, StopSignal):
        return args[0]
    if isinstance(layer, FeedbackPath):
        return args[1]
    if isinstance(layer, DirectFeedback):
        return args[0]
    return layer(*args, **kwargs)


def without_feedback(model: keras.Model) -> keras.Model:
    """`model`'s network as exact backpropagation trains it: every weight layer sends the
    learning signal down through its own weights W, as without feedback weights.  A new
    functional model sharing every layer, and so every weight, with `model` (its feedback
    layers left out): the same outputs for the same inputs; only the signal sent down
    differs.  The inverse of `with_feedback`, for networks built by `Pathway` too."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.input
    graph = keras.Model(inputs, model.output)
    clone = keras.models.clone_model(graph, clone_function=lambda layer: layer,
                                     call_function=_exact, recursive=True)
    return keras.Model(clone.input, clone.output, name=f"{model.name}_exact")
