"""The BrainProp learning rule (Section 2 of the paper), as one Keras model.

Per example the network's linear outputs are Q values, the expected reward
of choosing each class.  A Max-Boltzmann controller picks one class, the
environment rewards 1 for the label and 0 otherwise, and only the chosen
unit learns, through the reward-prediction error (RPE) r - Q_s.  The
gradient of 1/2 (r - Q_s)^2 is Eq. 15 of the paper; no other part of the
project knows about the rule.
"""

from __future__ import annotations

import keras
from keras import ops

# Probability of exploring instead of choosing the greedy class.
EPSILON = 0.02


def select_action(q_values, epsilon: float, seed_generator):
    """Max-Boltzmann selection: argmax Q with probability 1 - epsilon, else a
    sample from softmax(Q) (temperature 1).

    Args:
        q_values: (batch, n_classes) float tensor.
        epsilon: probability of exploring.
        seed_generator: a `keras.random.SeedGenerator`; its state advances on
            every call, so choices differ from step to step on every backend.

    Returns:
        (batch,) int32 tensor of selected classes.
    """
    greedy = ops.cast(ops.argmax(q_values, axis=-1), "int32")
    explore = keras.random.uniform(ops.shape(greedy), seed=seed_generator) < epsilon
    boltzmann = keras.random.categorical(q_values, 1, seed=seed_generator, dtype="int32")
    return ops.where(explore, boltzmann[:, 0], greedy)


def reward_for(selected_class, labels):
    """Reward 1 where the selected class is the label, else 0 (float32, (batch,))."""
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    return ops.cast(ops.equal(selected_class, labels), "float32")


def brainprop_loss(q_values, reward, selected_class):
    """Mean over the batch of 1/2 (r - Q_s)^2; only Q_s receives a gradient."""
    mask = ops.one_hot(selected_class, ops.shape(q_values)[-1], dtype=q_values.dtype)
    q_selected = ops.sum(q_values * ops.stop_gradient(mask), axis=-1)
    rpe = ops.cast(reward, q_values.dtype) - q_selected
    return 0.5 * ops.mean(ops.square(rpe))


class BrainProp(keras.Model):
    """A functional model trained with the BrainProp rule.

    Build it like any functional model, with a linear output of one unit per
    class: `BrainProp(inputs, q_values)`.  Compile it with an optimizer and no
    loss.  Labels are integer classes; the model uses them only to compute the
    reward of its own choice.

    The logged "accuracy" is the reward rate: during training the fraction of
    rewarded Max-Boltzmann choices, during evaluation (greedy choices) the
    classification accuracy.  Predictions are argmax Q.
    """

    def __init__(self, *args, epsilon: float = EPSILON, seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epsilon = epsilon
        self.selection_seed = keras.random.SeedGenerator(seed, name="selection_seed")
        self.reward_rate = keras.metrics.Mean(name="accuracy")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training:
            selected = select_action(y_pred, self.epsilon, self.selection_seed)
        else:
            selected = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        selected = ops.stop_gradient(selected)
        reward = reward_for(selected, y)
        self.reward_rate.update_state(reward)
        loss = brainprop_loss(y_pred, reward, selected)
        regularization = self.losses
        if regularization:
            loss = loss + ops.sum(ops.stack(regularization))
        return loss


def exploration_rate(model: keras.Model) -> float | None:
    """The probability of exploring of a BrainProp model; None for EBP, which never explores."""
    return model.epsilon if isinstance(model, BrainProp) else None


def training_accuracy_label(model: keras.Model) -> str:
    """What the logged training "accuracy" of `model` measures, for plot legends."""
    return "training (reward rate)" if isinstance(model, BrainProp) else "training"
