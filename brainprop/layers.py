"""Layers that Keras 3 no longer ships.

`LocallyConnected2D` is a convolution whose filters are not shared: every
output position has its own kernel.  Keras 3 dropped the layer, but the
paper's `loccon` networks need it, and the original release's Keras 2 weight
files must load into it unchanged, so the weights keep Keras 2's layout
(`implementation=1`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """`value` as a (rows, cols) pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(
            f"`{name}` must be a positive int or a pair of positive ints; got {value!r}"
        )
    return pair


def window_patches(
    inputs: Any,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    output_size: tuple[int, int],
) -> Any:
    """Every "valid" window of `inputs`, flattened in (row, column, channel) order.

    `(batch, rows, cols, channels)` -> `(batch, out_rows, out_cols, kh*kw*channels)`.
    Built from kh*kw strided slices, one per position inside the window, joined
    along the channels.  This is exact, and much cheaper than
    `ops.image.extract_patches`, which convolves with a (window x window)
    identity kernel: for the CIFAR loccon's second layer that is 288 times the
    work of copying, and its gradient costs as much again.
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    out_rows, out_cols = output_size
    row_span, col_span = sh * (out_rows - 1) + 1, sw * (out_cols - 1) + 1
    slices = [
        inputs[:, i : i + row_span : sh, j : j + col_span : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return ops.concatenate(slices, axis=-1)


@keras.saving.register_keras_serializable(package="brainprop")
class LocallyConnected2D(keras.layers.Layer):
    """2D convolution with unshared weights: one kernel per output position.

    Like `Conv2D` with "valid" padding, each output position sees a
    `kernel_size` window of the input, but every position has its own filters.
    The weights are laid out exactly as Keras 2's `LocallyConnected2D` with
    `implementation=1`, so Keras 2 weight files load as they are.

    Args:
        filters: number of output channels.
        kernel_size: window height and width, an int or a pair `(kh, kw)`.
        strides: step between windows, an int or a pair `(sh, sw)`.
        padding: only "valid" (Keras 2 supported nothing else either).
        use_bias: whether to add a bias, one per output position and filter.
        kernel_initializer: initializer for the kernel.
        kernel_regularizer: regularizer for the kernel, or None.
        bias_initializer: initializer for the bias (used only with `use_bias`).
        data_format: only "channels_last" (or None, which means the same).
        **kwargs: standard layer arguments (`name`, `dtype`, `trainable`, ...).

    Weights:
        kernel: `(out_rows * out_cols, kh * kw * channels, filters)`.  Output
            positions run row-major; each window is flattened in
            (row, column, channel) order.
        bias: `(out_rows, out_cols, filters)`, only with `use_bias=True`.

    Input shape:
        `(batch, rows, cols, channels)`; rows, cols and channels must be known.

    Output shape:
        `(batch, out_rows, out_cols, filters)` with
        `out_rows = (rows - kh) // sh + 1` and `out_cols = (cols - kw) // sw + 1`.

    Example:

    >>> import numpy as np
    >>> layer = LocallyConnected2D(32, 3)
    >>> layer(np.zeros((4, 32, 32, 3), "float32")).shape
    (4, 30, 30, 32)
    >>> tuple(layer.kernel.shape)  # 30 * 30 positions, 3 * 3 * 3 inputs each
    (900, 27, 32)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid",
        use_bias: bool = False,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        bias_initializer: Any = "zeros",
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"`filters` must be a positive int; got {filters!r}")
        padding = padding.lower() if isinstance(padding, str) else padding
        if padding != "valid":
            raise ValueError(
                f"LocallyConnected2D supports only padding='valid'; got {padding!r}"
            )
        # None is accepted for symmetry with Keras 2, but deliberately not
        # resolved through keras.config.image_data_format(): the weight layout
        # is defined for channels_last only.
        if data_format not in (None, "channels_last"):
            raise ValueError(
                "LocallyConnected2D supports only data_format='channels_last'; "
                f"got {data_format!r}"
            )
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.data_format = "channels_last"
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _output_size(
        self, rows: int | None, cols: int | None
    ) -> tuple[int | None, int | None]:
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        out_rows = None if rows is None else (rows - kh) // sh + 1
        out_cols = None if cols is None else (cols - kw) // sw + 1
        return out_rows, out_cols

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        _, rows, cols, channels = input_shape
        if rows is None or cols is None or channels is None:
            # Every output position owns weights, so their number depends on
            # the spatial size.
            raise ValueError(
                "LocallyConnected2D needs fully known rows, cols and channels; "
                f"got input shape {input_shape}"
            )
        out_rows, out_cols = self._output_size(rows, cols)
        if out_rows <= 0 or out_cols <= 0:
            raise ValueError(
                f"input {rows}x{cols} is smaller than the kernel "
                f"{self.kernel_size[0]}x{self.kernel_size[1]}"
            )
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(out_rows * out_cols, kh * kw * channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(out_rows, out_cols, self.filters),
                initializer=self.bias_initializer,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={1: rows, 2: cols, 3: channels}
        )

    def call(self, inputs: Any) -> Any:
        out_rows, out_cols = self._output_size(inputs.shape[1], inputs.shape[2])
        positions, window, _ = self.kernel.shape
        patches = ops.reshape(
            window_patches(inputs, self.kernel_size, self.strides, (out_rows, out_cols)),
            (-1, positions, window),
        )
        # One matrix product per output position: (positions, batch, window) @
        # (positions, window, filters).  A batched matmul over a leading axis
        # beats the equivalent einsum on JAX and ties with it on TensorFlow
        # (benchmarks/loccon.py).
        outputs = ops.matmul(ops.transpose(patches, (1, 0, 2)), self.kernel)
        outputs = ops.reshape(
            ops.transpose(outputs, (1, 0, 2)), (-1, out_rows, out_cols, self.filters)
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(
        self, input_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        batch, rows, cols, _ = input_shape
        out_rows, out_cols = self._output_size(rows, cols)
        return (batch, out_rows, out_cols, self.filters)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "data_format": self.data_format,
            }
        )
        return config
