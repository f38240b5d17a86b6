"""Alignment: how far a network with feedback weights is from exact backpropagation, as
angles in degrees, per weight layer, measured at the end of every epoch (`AlignmentLog`).

* `weight_angle/<layer>`: between the layer's kernel W and its feedback weights B this
  step (for sign symmetry sign(W) times its magnitude), both flattened.  Direct feedback
  has no B of W's shape, and no such angle.
* `update_angle/<layer>`: between the gradient for W that the network computes with its
  feedback and the one exact backpropagation computes, on one fixed batch, for the same
  loss and the same choices.  The signal at the network's outputs is computed once,
    delta = d loss / d outputs,
  and the two gradients are those of sum(outputs * stop_gradient(delta)) for each W:
  through the network as it is, and through the same layers wired without feedback
  (`brainprop.model.pathway.without_feedback`).

The fixed batch is evaluated in inference mode (no dropout, batch normalisation with its
moving statistics), so the angles depend on the weights alone.  For BrainProp the loss is
the rule's, with one draw of its Max-Boltzmann choices from a seed of its own
(`CHOICE_SEED`): the same random numbers every epoch, the model's own selection seed
untouched.  For any other rule it is the loss the model was compiled with.  Weight
penalties (L2, Kolen-Pollack's decay) add the same term to both gradients and are left out.

Both angles are 0 by definition with symmetric feedback (B is W): such a network has no
feedback layers and nothing is measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from brainprop.model.attention_gated import BrainProp, brainprop_loss, reward_for, select_action
from brainprop.model.feedback import UPDATE_ANGLE, WEIGHT_ANGLE
from brainprop.model.pathway import (
    FeedbackPath,
    feedback_weights,
    layers_of,
    serves,
    without_feedback,
)
from brainprop.utils.gradients import gradients

# The fixed batch: the first images of the training set, at most this many.
ALIGNMENT_IMAGES = 256
# The seed of BrainProp's choices on the fixed batch (the paper's year).
CHOICE_SEED = 2020


def angle(a: Any, b: Any) -> float:
    """The angle between `a` and `b`, flattened, in degrees (0 to 180); NaN where either
    is zero or not finite.

    Computed as 2 atan2(|u - v|, |u + v|) of the unit vectors u, v, which keeps its
    precision near 0 and 180 degrees, where arccos of the cosine loses it.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    norms = np.linalg.norm(a), np.linalg.norm(b)
    if not all(math.isfinite(n) and n > 0 for n in norms):
        return math.nan
    u, v = a / norms[0], b / norms[1]
    return math.degrees(2.0 * math.atan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))


def weight_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model` whose kernel the feedback serves, in the network's order."""
    return [layer for layer in layers_of(model) if serves(layer)]


def weight_angles(model: keras.Model) -> dict[str, float]:
    """`weight_angle/<layer>`: the angle between W and B of every layer with feedback
    weights of W's shape (none with direct feedback)."""
    angles = {}
    for path in (layer for layer in layers_of(model) if isinstance(layer, FeedbackPath)):
        kernel = path.linear.kernel
        feedback = feedback_weights(path.kind, kernel, path.feedback)
        angles[f"{WEIGHT_ANGLE}/{path.linear.layer.name}"] = angle(
            ops.convert_to_numpy(kernel), ops.convert_to_numpy(feedback))
    return angles


def output_loss(model: keras.Model, outputs: Any, labels: Any) -> Callable[[Any], Any]:
    """The rule's loss as a function of the network's outputs, its choices fixed for
    `outputs`: for BrainProp one Max-Boltzmann draw from `CHOICE_SEED`, else the loss
    `model` was compiled with."""
    if isinstance(model, BrainProp):
        outputs = ops.cast(outputs, "float32")
        selected = select_action(outputs, model.epsilon, keras.random.SeedGenerator(CHOICE_SEED))
        reward = reward_for(selected, labels)
        return lambda q_values: brainprop_loss(q_values, reward, selected, model.batch_size)
    if model.loss is None:
        raise ValueError(f"{model.name!r} has no loss to measure its updates with: compile it")
    return lambda logits: model.loss(labels, logits)


def _readout(network: keras.Model, kernels: list, images: Any,
             delta: Any) -> Callable[..., Any]:
    """sum(outputs * delta) of `network` on `images`, as a function of the values of
    `kernels` (the variables themselves untouched)."""
    def readout(*values):
        with keras.StatelessScope(state_mapping=list(zip(kernels, values, strict=True))):
            outputs = network(images, training=False)
        return ops.sum(ops.cast(outputs, "float32") * delta)

    return readout


class Alignment:
    """The angles of `model`, a network with feedback weights, on one fixed batch
    (`images`, float as the network takes them, and integer `labels`).

    `angles()` measures them for the weights as they are now: a dict of
    `weight_angle/<layer>` and `update_angle/<layer>` in degrees.  It changes nothing:
    no weight, no optimizer state, no random state of the model.
    """

    def __init__(self, model: keras.Model, images: Any, labels: Any) -> None:
        self.model = model
        self.exact = without_feedback(model)
        self.layers = weight_layers(model)
        self.images = ops.convert_to_tensor(images)
        self.labels = ops.convert_to_tensor(labels)

    def angles(self) -> dict[str, float]:
        return {**weight_angles(self.model), **self.update_angles()}

    def update_angles(self) -> dict[str, float]:
        """`update_angle/<layer>` of every weight layer."""
        outputs = self.model(self.images, training=False)
        delta, = gradients(output_loss(self.model, outputs, self.labels), [outputs])
        delta = ops.convert_to_tensor(delta)  # a constant: stop_gradient
        kernels = [layer.kernel for layer in self.layers]
        with_feedback = gradients(_readout(self.model, kernels, self.images, delta), kernels)
        exact = gradients(_readout(self.exact, kernels, self.images, delta), kernels)
        return {f"{UPDATE_ANGLE}/{layer.name}": angle(made, backpropagated)
                for layer, made, backpropagated in zip(self.layers, with_feedback, exact,
                                                       strict=True)}


class AlignmentLog(keras.callbacks.Callback):
    """Writes the angles of `Alignment`, measured on `images` and `labels`, into the logs
    of every epoch's end: the history, the CSV log and TensorBoard show them when they
    come after this callback.  For a model with feedback weights (`has_feedback`)."""

    def __init__(self, images: Any, labels: Any) -> None:
        super().__init__()
        self.images, self.labels = images, labels
        self.alignment: Alignment | None = None

    def on_train_begin(self, logs=None):
        self.alignment = Alignment(self.model, self.images, self.labels)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.alignment.angles())
