"""The BrainProp learning rule (Section 2 of the paper), as one Keras model.

Per example the network's linear outputs are Q values, the expected reward
of choosing each class.  A Max-Boltzmann controller picks one class, the
environment rewards 1 for the label and 0 otherwise, and only the chosen
unit learns, through the reward-prediction error (RPE) r - Q_s.  The
gradient of 1/2 (r - Q_s)^2 is Eq. 15 of the paper.  The rest of the
project knows the rule only through its declaration in `brainprop.model.rules`.
"""

from __future__ import annotations

import keras
from keras import ops

from brainprop.model.rules import EPSILON
from brainprop.utils.devices import replica_of_step


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

    Replicas of one data-parallel step (`brainprop.utils.devices.replica_of_step`)
    start from the same seed state, so each draws for all replicas and keeps its own
    share: no two replicas make the same draws, and each share is distributed
    exactly as one replica's draws would be.  (Keras seeds are integers or
    generators, so the replica cannot be folded into the seed itself.)
    """
    # A diverged network's Q values (NaN, inf) still give a class, whatever it is, so that
    # the step ends and TerminateOnNaN stops the run: PyTorch's sampler would raise
    # instead.  Finite Q values draw exactly as they would without this.
    q_values = ops.where(ops.isfinite(q_values), q_values, ops.zeros_like(q_values))
    greedy = ops.cast(ops.argmax(q_values, axis=-1), "int32")
    replica, replicas = replica_of_step()
    if replicas == 1:
        uniform = keras.random.uniform(ops.shape(greedy), seed=seed_generator)
        boltzmann = keras.random.categorical(q_values, 1, seed=seed_generator, dtype="int32")
        return ops.where(uniform < epsilon, boltzmann[:, 0], greedy)
    everyone = (replicas, ops.shape(greedy)[0])
    uniform = keras.random.uniform(everyone, seed=seed_generator)
    boltzmann = keras.random.categorical(
        ops.tile(q_values, (replicas, 1)), 1, seed=seed_generator, dtype="int32"
    )
    uniform = ops.take(uniform, replica, axis=0)
    boltzmann = ops.take(ops.reshape(boltzmann, everyone), replica, axis=0)
    return ops.where(uniform < epsilon, boltzmann, greedy)


def reward_for(selected_class, labels):
    """Reward 1 where the selected class is the label, else 0 (float32, (batch,))."""
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    return ops.cast(ops.equal(selected_class, labels), "float32")


def reward_prediction_error(q_values, reward, selected_class):
    """The RPE r - Q_s of each example ((batch,), in the Q values' dtype); only Q_s
    receives a gradient."""
    mask = ops.one_hot(selected_class, ops.shape(q_values)[-1], dtype=q_values.dtype)
    q_selected = ops.sum(q_values * ops.stop_gradient(mask), axis=-1)
    return ops.cast(reward, q_values.dtype) - q_selected


def brainprop_loss(q_values, reward, selected_class, batch_size: int | None = None):
    """1/2 (r - Q_s)^2 summed over the examples and divided by `batch_size`.

    Only Q_s receives a gradient.  With `batch_size` the configured batch size
    (the original release's rule), every example moves the weights equally,
    and a smaller last batch of an epoch takes a proportionally smaller step.
    `batch_size=None` divides by the number of examples given (the mean).
    """
    rpe = reward_prediction_error(q_values, reward, selected_class)
    if batch_size is None:
        return 0.5 * ops.mean(ops.square(rpe))
    return 0.5 * ops.sum(ops.square(rpe)) / batch_size


@keras.saving.register_keras_serializable(package="brainprop")
class BrainProp(keras.Model):
    """A functional model trained with the BrainProp rule.

    Build it like any functional model, with a linear output of one unit per
    class: `BrainProp(inputs, q_values, batch_size=128)`.  Compile it with an
    optimizer and no loss.  Labels are integer classes; the model uses them
    only to compute the reward of its own choice.

    `batch_size` is the configured batch size: a training batch's loss is the
    sum of its examples' losses divided by it, as in the original release, so
    the last, smaller batch of an epoch steps in proportion to its size.
    Without it (None) the loss is the mean over the batch.  Evaluation always
    reports the mean, whatever the batches.

    The logged "accuracy" is the reward rate: during training the fraction of
    rewarded Max-Boltzmann choices, during evaluation (greedy choices) the
    classification accuracy.  Predictions are argmax Q.

    `model.save("x.keras")` and `keras.models.load_model` keep the rule's
    settings (`epsilon`, `batch_size`, the selection seed) with the network.
    """

    def __init__(
        self,
        *args,
        epsilon: float = EPSILON,
        seed: int | None = None,
        batch_size: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.seed = seed
        self.selection_seed = keras.random.SeedGenerator(seed, name="selection_seed")
        self.reward_rate = keras.metrics.Mean(name="accuracy")

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon, "seed": self.seed,
                "batch_size": self.batch_size}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Under mixed precision (float16 or bfloat16) the output layer already computes
        # in float32; the rule (choice, reward, error) never runs in half precision.
        y_pred = ops.cast(y_pred, "float32")
        if training:
            selected = select_action(y_pred, self.epsilon, self.selection_seed)
        else:
            selected = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        selected = ops.stop_gradient(selected)
        reward = reward_for(selected, y)
        self.reward_rate.update_state(reward)
        divisor = self.batch_size if training else None
        loss = brainprop_loss(y_pred, reward, selected, divisor)
        # Replicas of a TensorFlow data-parallel step sum their gradients: each
        # returns its share of the global batch's loss (Keras scales its own
        # losses the same way).  A sum over this replica's images divided by the
        # configured, global, batch size is that share already; a mean, and the
        # L2 penalty that every replica adds in full, are divided among replicas.
        _, replicas = replica_of_step()
        if divisor is None:
            loss = loss / replicas
        regularization = self.losses
        if regularization:
            loss = loss + ops.cast(ops.sum(ops.stack(regularization)), "float32") / replicas
        return loss

