"""Gradients outside a training step, on whichever backend runs: the one place that asks a
backend's own automatic differentiation (TensorFlow's `GradientTape`, `jax.grad`, torch's
autograd) for them.

Keras 3 has no backend-neutral gradient function; its trainers each differentiate their
own step.  Measurements made between steps (the alignment of feedback weights,
`brainprop.model.alignment`) differentiate through here instead, and so does the backward
pass of the feedback pathway inside the training step (`pullback`, for
`brainprop.model.pathway`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


def gradients(function: Callable[..., Any], values: Sequence[Any]) -> list[np.ndarray]:
    """The gradient of `function(*values)`, a scalar, with respect to each of `values`
    (tensors or arrays), as NumPy arrays of their shapes; zeros for a value the result does
    not depend on.

    `function` receives backend tensors it may differentiate through; to differentiate
    through a model's variables, it maps them to these tensors (`keras.StatelessScope`).
    Nothing is updated: no optimizer, no variable, no gradient kept on a variable.
    """
    values = [ops.convert_to_tensor(value) for value in values]
    found = pullback(function, values)
    return [np.zeros(tuple(value.shape), "float32") if gradient is None
            else ops.convert_to_numpy(gradient) for value, gradient in zip(values, found,
                                                                            strict=True)]


def pullback(function: Callable[..., Any], values: Sequence[Any], cotangent: Any = None) -> list:
    """The vector-Jacobian products of `function` at `values` with `cotangent` (the
    gradient arriving at its output; None: ones, the gradient of a scalar): one backend
    tensor per value (None, or zeros on JAX, where the result does not depend on it),
    inside a compiled step too.  For a `function` linear in a value, its transpose applied
    to `cotangent`.  Each value is a leaf of its own: no gradient reaches a variable
    whose tensor is passed in.

    Only what the products need is computed: on TensorFlow and JAX the forward value of
    `function` is not (nothing consumes it, so the graph or XLA drops it); PyTorch, eager,
    computes it.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Here, not at the top: only the running backend need be installed.
        import tensorflow as tf

        values = [tf.identity(value) for value in values]  # a variable read, as a tensor
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(values)
            result = function(*values)
        return tape.gradient(result, values, output_gradients=cotangent)
    if backend == "jax":
        # Here, not at the top: only the running backend need be installed.
        import jax

        result, backward = jax.vjp(function, *values)
        return list(backward(jax.numpy.ones_like(result) if cotangent is None else cotangent))
    if backend == "torch":
        # Here, not at the top: only the running backend need be installed.
        import torch

        leaves = [value.detach().requires_grad_(True) for value in values]
        with torch.enable_grad():
            result = function(*leaves)
            return list(torch.autograd.grad(result, leaves, cotangent, allow_unused=True))
    raise NotImplementedError(f"no gradients on the {backend} backend")
