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
    backend = keras.backend.backend()
    if backend == "tensorflow":
        found = _tensorflow(function, values)
    elif backend == "jax":
        found = _jax(function, values)
    elif backend == "torch":
        found = _torch(function, values)
    else:
        raise NotImplementedError(f"no gradients on the {backend} backend")
    return [np.zeros(tuple(value.shape), "float32") if gradient is None
            else ops.convert_to_numpy(gradient) for value, gradient in zip(values, found,
                                                                            strict=True)]


def _tensorflow(function: Callable[..., Any], values: list) -> list:
    # Here, not at the top: only the running backend need be installed.
    import tensorflow as tf

    values = [tf.identity(value) for value in values]  # a variable read, as a tensor
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(values)
        result = function(*values)
    return tape.gradient(result, values)


def _jax(function: Callable[..., Any], values: list) -> list:
    # Here, not at the top: only the running backend need be installed.
    import jax

    return jax.grad(lambda arguments: function(*arguments))(values)


def _torch(function: Callable[..., Any], values: list) -> list:
    # Here, not at the top: only the running backend need be installed.
    import torch

    # Leaves of their own: a variable's tensor passed in gains no gradient.
    leaves = [value.detach().clone().requires_grad_(True) for value in values]
    with torch.enable_grad():
        result = function(*leaves)
        return list(torch.autograd.grad(result, leaves, allow_unused=True))


def pullback(function: Callable[..., Any], values: Sequence[Any], cotangent: Any) -> list:
    """The vector-Jacobian products of `function` at `values` with `cotangent` (the
    gradient arriving at its output): one backend tensor per value, inside a compiled
    step too.  For a `function` linear in a value, its transpose applied to `cotangent`.

    Only what the products need is computed: on TensorFlow and JAX the forward value of
    `function` is not (nothing consumes it, so the graph or XLA drops it); PyTorch, eager,
    computes it.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Here, not at the top: only the running backend need be installed.
        import tensorflow as tf

        values = [tf.identity(value) for value in values]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(values)
            result = function(*values)
        return tape.gradient(result, values, output_gradients=cotangent)
    if backend == "jax":
        # Here, not at the top: only the running backend need be installed.
        import jax

        return list(jax.vjp(function, *values)[1](cotangent))
    if backend == "torch":
        # Here, not at the top: only the running backend need be installed.
        import torch

        leaves = [value.detach().requires_grad_(True) for value in values]
        with torch.enable_grad():
            result = function(*leaves)
            return list(torch.autograd.grad(result, leaves, cotangent))
    raise NotImplementedError(f"no gradients on the {backend} backend")
