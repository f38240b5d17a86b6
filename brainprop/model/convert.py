"""Any Keras classifier as a BrainProp model, in one call: `to_brainprop`.

A classifier's logits (the inputs of its softmax, or its outputs where it has none)
become the Q values of a `BrainProp` model that shares every layer with it.
"""

from __future__ import annotations

import keras
from keras import ops

from brainprop.model.attention_gated import BrainProp
from brainprop.model.feedback import DEFAULT_FEEDBACK, FeedbackKind, get_feedback
from brainprop.model.pathway import with_feedback
from brainprop.model.rules import EPSILON
from brainprop.utils.compat import producer
from brainprop.utils.errors import BrainPropError


def to_brainprop(
    classifier: keras.Model,
    batch_size: int | None = None,
    *,
    epsilon: float = EPSILON,
    seed: int | None = None,
    name: str | None = None,
    feedback: str | FeedbackKind = DEFAULT_FEEDBACK,
) -> BrainProp:
    """The BrainProp model of an existing Keras classifier, in one call.

    `classifier` is a functional or Sequential model with one output of shape
    (batch, classes): logits, or a softmax of them (a `Dense` with
    `activation="softmax"`, or a trailing `Softmax` or `Activation("softmax")`
    layer, in the model itself or in a nested model ending it).  The softmax is
    left out: its inputs, the logits, become the Q values.  The returned model
    shares every layer, and so every weight, with `classifier` (training one
    trains the other), which itself is unchanged.  `batch_size`, `epsilon` and
    `seed` are those of `BrainProp`.  `feedback` is what its weight layers send the
    learning signal down through (`brainprop.model.feedback`; "symmetric", the paper's,
    is their own weights; another kind adds feedback weights, drawn from `seed`).

    Raises:
        BrainPropError: the classifier has no graph to take the logits from
            (a subclassed or unbuilt model), more than one output, an output
            that is not (batch, classes), or an output activation other than a
            softmax (BrainProp's Q values are linear); an unknown `feedback`, or a
            layer with weights it cannot serve (a depthwise convolution, ...).
    """
    get_feedback(feedback)  # an unknown kind ends here, before the graph is read
    outputs = _graph_outputs(classifier)
    if len(outputs) != 1:
        raise BrainPropError(
            f"{classifier.name!r} has {len(outputs)} outputs: to_brainprop takes a classifier "
            "with one output of shape (batch, classes)"
        )
    q_values = _logits_of(classifier, outputs[0])
    if len(q_values.shape) != 2 or q_values.shape[-1] is None or q_values.shape[-1] < 2:
        raise BrainPropError(
            f"the output of {classifier.name!r} has shape {tuple(q_values.shape)}, not "
            "(batch, classes): BrainProp chooses one of the classes per example"
        )
    inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.input
    if not get_feedback(feedback).tied:
        network = with_feedback(keras.Model(inputs, q_values), feedback, seed)
        inputs = network.inputs[0] if len(network.inputs) == 1 else network.input
        q_values = network.outputs[0]
    return BrainProp(
        inputs,
        q_values,
        epsilon=epsilon,
        seed=seed,
        batch_size=batch_size,
        name=name or f"{classifier.name}_brainprop",
    )


def _graph_outputs(classifier: keras.Model) -> list:
    try:
        return list(classifier.outputs)
    except AttributeError:
        raise BrainPropError(
            f"{classifier.name!r} has no graph of layers to take its logits from (a subclassed "
            "or not yet built model): build it on keras.Input, or build BrainProp(inputs, "
            "q_values) on its logits yourself"
        ) from None


_SOFTMAXES = ("softmax", "log_softmax")


def _activation_name(function) -> str:
    """"softmax", "linear", ... for Keras' own activations; the function's name otherwise."""
    for known in (*_SOFTMAXES, "linear"):
        if function is getattr(keras.activations, known):
            return known
    return getattr(function, "__name__", repr(function))


def _logits_of(classifier: keras.Model, output):
    """`output`, or where it is a softmax, the logits it is the softmax of."""
    layer, call_inputs = producer(output)
    if isinstance(layer, keras.Model):  # a nested model: its own logits, if it has any
        inner = _logits_of(layer, _graph_outputs(layer)[0])
        if inner is layer.outputs[0]:
            return output
        if len(call_inputs) != 1:
            raise BrainPropError(
                f"the output of {classifier.name!r} is a softmax inside the nested model "
                f"{layer.name!r} of {len(call_inputs)} inputs: build BrainProp(inputs, "
                "q_values) on its logits yourself"
            )
        return keras.Model(layer.inputs, inner, name=f"{layer.name}_logits")(call_inputs[0])
    if isinstance(layer, keras.layers.Softmax):
        if layer.axis not in (-1, len(output.shape) - 1):
            raise BrainPropError(
                f"the Softmax layer {layer.name!r} normalises axis {layer.axis}, not the classes "
                "(the last axis): to_brainprop takes a classifier with outputs (batch, classes)"
            )
        return call_inputs[0]
    activation = getattr(layer, "activation", None)
    if activation is None:
        return output  # a layer with no activation of its own: logits
    kind = _activation_name(activation)
    if kind == "linear":
        return output
    if kind not in _SOFTMAXES:
        raise BrainPropError(
            f"the output layer {layer.name!r} of {classifier.name!r} applies {kind}: BrainProp "
            "needs linear outputs (logits) or a softmax of them; give it a linear or softmax "
            "output layer"
        )
    if isinstance(layer, keras.layers.Activation):
        return call_inputs[0]
    if isinstance(layer, keras.layers.Dense) and not getattr(layer, "quantization_mode", None):
        return DenseLogits(layer)(call_inputs[0])
    raise BrainPropError(
        f"cannot take the softmax out of the {type(layer).__name__} layer {layer.name!r}: end "
        "the classifier in Dense(classes, activation='softmax') or in a Softmax layer"
    )


@keras.saving.register_keras_serializable(package="brainprop")
class DenseLogits(keras.layers.Layer):
    """The logits of a `Dense` layer whose activation is a softmax: inputs @ kernel + bias
    with that layer's own weights (shared, not copied), without the activation."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):
        kwargs.setdefault("name", f"{dense.name}_logits")
        kwargs.setdefault("dtype", dense.dtype_policy)
        super().__init__(**kwargs)
        self.dense = dense

    def build(self, input_shape):
        if not self.dense.built:  # rebuilt from its config
            self.dense.build(input_shape)

    @property
    def kernel(self):
        return self.dense.kernel

    def linear_map(self, inputs, kernel):
        """The logits with `kernel` in place of the Dense layer's, before its bias."""
        return ops.matmul(inputs, kernel)

    def call(self, inputs):
        logits = self.linear_map(inputs, self.dense.kernel)
        return ops.add(logits, self.dense.bias) if self.dense.use_bias else logits

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dense.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "dense": keras.saving.serialize_keras_object(self.dense)}

    @classmethod
    def from_config(cls, config: dict) -> DenseLogits:
        config = dict(config)
        dense = keras.saving.deserialize_keras_object(config.pop("dense"))
        return cls(dense, **config)
