"""Shared helpers: gradients on whichever backend Keras runs."""

import os

from brainprop.utils.backend import keep_freed_memory  # imports no Keras

# As brainprop.utils.backend.start() does for a run (it comes too late here: Keras starts below).
if os.environ.get("KERAS_BACKEND") == "torch":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def gradients(model: keras.Model, x, loss_of_outputs, training=True) -> list[np.ndarray]:
    """d loss_of_outputs(model(x, training=training)) / d trainable weights, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of_outputs(model(x, training=training))
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    if backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_fn(trainable):
            outputs, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return loss_of_outputs(outputs)

        grads = jax.grad(loss_fn)([v.value for v in model.trainable_variables])
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        loss = loss_of_outputs(model(x, training=training))
        grads = torch.autograd.grad(loss, [v.value for v in model.trainable_variables])
        return [g.detach().cpu().numpy() for g in grads]
    pytest.skip(f"no gradient helper for backend {backend}")


@pytest.fixture
def grad():
    return gradients
