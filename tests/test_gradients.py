"""Gradients outside a training step, on the running backend: exact, zero where the result
does not depend on a value, and nothing of the model's changed."""

import keras
import numpy as np
from keras import ops

from brainprop.utils.gradients import gradients


def test_the_gradient_of_a_function_of_several_values_is_computed_by_hand():
    rng = np.random.default_rng(0)
    a, b, unused = (rng.standard_normal((3, 2)).astype("float32") for _ in range(3))

    def function(a, b, unused):
        return ops.sum(a * a * b) + ops.sum(ops.sin(b))

    da, db, dunused = gradients(function, [a, b, unused])
    np.testing.assert_allclose(da, 2 * a * b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, a * a + np.cos(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dunused, np.zeros_like(unused))
    assert all(isinstance(g, np.ndarray) for g in (da, db, dunused))


def test_a_models_kernel_is_differentiated_through_a_stateless_scope_and_left_as_it_is():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype("float32")
    upstream = np.random.default_rng(2).standard_normal((5, 3)).astype("float32")
    kernel = ops.convert_to_numpy(dense.kernel)
    shifted = kernel + 1.0

    def readout(value):
        with keras.StatelessScope(state_mapping=[(dense.kernel, value)]):
            return ops.sum(model(x) * ops.convert_to_tensor(upstream))

    # At the kernel's own value (the variable passed in) and at another value.
    np.testing.assert_allclose(gradients(readout, [dense.kernel])[0], x.T @ upstream,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradients(lambda v: readout(v) * ops.sum(v), [shifted])[0],
                               x.T @ upstream * shifted.sum() + np.sum((x @ shifted) * upstream),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ops.convert_to_numpy(dense.kernel), kernel)
