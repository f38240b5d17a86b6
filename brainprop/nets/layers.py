"""Layers that Keras 3 no longer ships, or no longer ships fast.

`LocallyConnected2D` is a convolution whose filters are not shared: every
output position has its own kernel.  Keras 3 dropped the layer, but the
paper's `loccon` networks need it, and the original release's Keras 2 weight
files must load into it unchanged, so the weights keep Keras 2's layout
(`implementation=1`).

`BatchNormalization` is Keras 3's layer with a fused kernel on TensorFlow (Keras 2's)
and PyTorch: Keras 3 composes batch normalization from a dozen elementwise and
reduction operations, which on a CPU cost the conv networks more than their
convolutions (benchmarks/RESULTS.md).

`Conv2D`, `MaxPooling2D` and `Dropout` are Keras 3's layers, faster on PyTorch: the
first two hand channels-last images to PyTorch's kernels in place (Keras copies them),
the third draws its masks three times as fast.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from brainprop.nets import kernels


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """`value` as a (rows, cols) pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(
            f"`{name}` must be a positive int or a pair of positive ints; got {value!r}"
        )
    return pair


def _phase_grid(
    kernel_size: tuple[int, int], strides: tuple[int, int], output_size: tuple[int, int]
) -> tuple[int, int]:
    """Rows and columns, in whole strides, that the windows reach: `(rows, cols)`.

    Input row `r * stride + phase` is row `r` of phase `phase`; a window at
    offset `i` reads phase `i % stride`, rows `i // stride` onwards.
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    out_rows, out_cols = output_size
    return -(-(sh * (out_rows - 1) + kh) // sh), -(-(sw * (out_cols - 1) + kw) // sw)


def _fit_rows_cols(x: Any, rows: int, cols: int) -> Any:
    """`(batch, r, c, channels)` cropped or zero-padded to `rows` x `cols`."""
    x = x[:, :rows, :cols, :]
    extra_rows, extra_cols = rows - x.shape[1], cols - x.shape[2]
    if extra_rows or extra_cols:
        x = ops.pad(x, ((0, 0), (0, extra_rows), (0, extra_cols), (0, 0)))
    return x


def window_patches(
    inputs: Any,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    output_size: tuple[int, int],
) -> Any:
    """Every "valid" window of `inputs`, output position first.

    `(batch, rows, cols, channels)` -> `(out_rows * out_cols, batch, kh * kw * channels)`:
    positions row-major, each window flattened in (row, column, channel) order,
    which is the layout the per-position matrix products need.

    The input is split once into its stride phases (row `r * stride + p` is row
    `r` of phase `p`), with the batch moved next to the channels; every offset
    inside the window is then a plain unstrided slice of one phase, and the
    windows are those slices joined along the channels.  The gradient is
    written out the same way in reverse (each slice padded back into place,
    phases interleaved), because the generic strided-slice gradient is slow
    on TensorFlow.  Both directions are exact copies and sums; there is no
    arithmetic on values.  `ops.image.extract_patches` would instead convolve
    with a (window x window) identity kernel: 288 times the work for the CIFAR
    loccon's second layer.
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    out_rows, out_cols = output_size
    _, rows, cols, channels = inputs.shape
    grid_rows, grid_cols = _phase_grid(kernel_size, strides, output_size)
    offsets = [(i, j) for i in range(kh) for j in range(kw)]

    def cut(x: Any) -> Any:
        x = _fit_rows_cols(x, grid_rows * sh, grid_cols * sw)
        x = ops.reshape(x, (-1, grid_rows, sh, grid_cols, sw, channels))
        phases = ops.transpose(x, (2, 4, 1, 3, 0, 5))  # (sh, sw, rows, cols, batch, ch)
        windows = [
            phases[i % sh, j % sw, i // sh : i // sh + out_rows, j // sw : j // sw + out_cols]
            for i, j in offsets
        ]
        patches = ops.concatenate(windows, axis=-1)  # (out_rows, out_cols, batch, window)
        return ops.reshape(patches, (out_rows * out_cols, -1, kh * kw * channels))

    @ops.custom_gradient
    def extract(x: Any) -> Any:
        def gradient(*args: Any, upstream: Any = None) -> Any:
            upstream = args[0] if upstream is None else upstream
            return window_patches_transpose(upstream, (rows, cols, channels), kernel_size,
                                            strides, output_size)

        return cut(x), gradient

    return extract(inputs)


def window_patches_transpose(
    upstream: Any,
    image_size: tuple[int, int, int],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    output_size: tuple[int, int],
) -> Any:
    """`window_patches`' transpose: `(positions, batch, window)` -> images of
    `image_size` (rows, cols, channels), each window's values added back where it was
    cut (the gradient of `window_patches`)."""
    (kh, kw), (sh, sw) = kernel_size, strides
    out_rows, out_cols = output_size
    rows, cols, channels = image_size
    grid_rows, grid_cols = _phase_grid(kernel_size, strides, output_size)
    offsets = [(i, j) for i in range(kh) for j in range(kw)]
    upstream = ops.reshape(upstream, (out_rows, out_cols, -1, kh * kw * channels))
    phases: dict[tuple[int, int], Any] = {}
    for (i, j), piece in zip(offsets, ops.split(upstream, kh * kw, axis=-1), strict=True):
        top, left = i // sh, j // sw
        placed = ops.pad(
            piece,
            ((top, grid_rows - top - out_rows), (left, grid_cols - left - out_cols),
             (0, 0), (0, 0)),
        )
        key = (i % sh, j % sw)
        phases[key] = placed if key not in phases else phases[key] + placed
    if len(phases) < sh * sw:  # phases no window reads (kernel < stride)
        zeros = ops.zeros_like(phases[0, 0])
        phases.update({(p, q): zeros for p in range(sh) for q in range(sw)
                       if (p, q) not in phases})
    grid = ops.stack(
        [ops.stack([phases[p, q] for q in range(sw)]) for p in range(sh)]
    )  # (sh, sw, rows, cols, batch, ch)
    x = ops.reshape(
        ops.transpose(grid, (4, 2, 0, 3, 1, 5)),
        (-1, grid_rows * sh, grid_cols * sw, channels),
    )
    return _fit_rows_cols(x, rows, cols)


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

    def linear_map(self, inputs: Any, kernel: Any) -> Any:
        """The layer's outputs with `kernel` in place of its own, before the bias: the
        linear map that feedback weights are applied with (`brainprop.model.pathway`)."""
        out_rows, out_cols = self._output_size(inputs.shape[1], inputs.shape[2])
        patches = window_patches(
            inputs, self.kernel_size, self.strides, (out_rows, out_cols)
        )
        # One matrix product per output position: (positions, batch, window) @
        # (positions, window, filters), a batched matmul over the leading axis.
        outputs = ops.matmul(patches, kernel)
        # Batch first, then the positions: on PyTorch the reshape copies the transposed
        # products into images with channels last, which the kernels after it read
        # several times faster than the products' own order.
        return ops.reshape(
            ops.transpose(outputs, (1, 0, 2)), (-1, out_rows, out_cols, self.filters)
        )

    def linear_map_transpose(self, inputs: Any, kernel: Any, upstream: Any,
                             learned: bool) -> tuple:
        """`linear_map`'s transpose with `kernel` applied to `upstream` (a signal at the
        outputs): the signal for `inputs`, and if `learned` the kernel's gradient, the
        signal times the patches (else None); the outputs themselves are not computed."""
        _, rows, cols, channels = inputs.shape
        out_rows, out_cols = self._output_size(rows, cols)
        signal = ops.transpose(
            ops.reshape(upstream, (-1, out_rows * out_cols, self.filters)), (1, 0, 2)
        )  # (positions, batch, filters)
        to_patches = ops.matmul(signal, ops.transpose(kernel, (0, 2, 1)))
        to_inputs = window_patches_transpose(to_patches, (rows, cols, channels),
                                             self.kernel_size, self.strides,
                                             (out_rows, out_cols))
        if not learned:
            return to_inputs, None
        patches = window_patches(inputs, self.kernel_size, self.strides, (out_rows, out_cols))
        return to_inputs, ops.matmul(ops.transpose(patches, (0, 2, 1)), signal)

    def call(self, inputs: Any) -> Any:
        outputs = self.linear_map(inputs, self.kernel)
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


@keras.saving.register_keras_serializable(package="brainprop")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, run by the backend's fused kernel where it can.

    Same weights, arguments and results as Keras' layer (to float rounding): for
    float32 or bfloat16 images (the layer's compute dtype; bfloat16 normalised in float32
    with float32 weights and statistics, as Keras' layer does) with channels last and
    no mask, renorm or synchronisation, both
    training and inference run one kernel forward and one backward, as Keras 2 did:
    `FusedBatchNormV3` on TensorFlow, `torch.nn.functional.batch_norm` on PyTorch,
    instead of Keras 3's composite of moments and elementwise operations.  The moving
    variance is updated with the batch's biased variance, as Keras 3 does (the fused
    kernels return the unbiased one, which is rescaled).  Everywhere else, and on JAX
    (whose compiler fuses the composite itself), it is Keras' layer unchanged.  The
    kernels' use lives in `brainprop.nets.kernels`, what it assumes of Keras' layer in
    `brainprop.utils.compat`.
    """

    def call(self, inputs, training=None, mask=None):
        if not kernels.fusable(self, inputs, mask, training):
            return super().call(inputs, training=training, mask=mask)
        return kernels.fused_batch_norm(self, inputs, training)


@keras.saving.register_keras_serializable(package="brainprop")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout`, whose seeded masks PyTorch draws three times as fast.

    On PyTorch, Keras 3.15 draws a seeded layer's mask with `torch.bernoulli` on a
    tensor of probabilities, which a CPU draws one value at a time (8 ms for the
    million units of a conv network's first dropout, batch 128, against 3 ms for
    uniform numbers).  Here a unit is kept where a uniform draw from the layer's seed
    generator is below the keep probability, and scaled by its inverse, as Keras does:
    the same distribution of masks and the same advance of the seed generator (one
    draw a call, so a resumed run drops the same units as an uninterrupted one),
    other masks than Keras' for the same seed.  On TensorFlow and JAX, and for a
    `noise_shape`, it is Keras' layer unchanged.
    """

    def call(self, inputs, training=False):
        if not (training and keras.backend.backend() == "torch" and 0 < self.rate < 1
                and self.noise_shape is None):
            return super().call(inputs, training=training)
        keep = 1.0 - self.rate
        draws = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
        return inputs * ops.where(draws < keep, ops.cast(1.0 / keep, inputs.dtype),
                                  ops.zeros((), inputs.dtype))


@keras.saving.register_keras_serializable(package="brainprop")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, which on PyTorch convolves channels-last images in place.

    Keras 3.15's torch backend copies each input twice on its way to PyTorch's kernel
    (`brainprop.nets.kernels`); here the kernel reads the images where they lie.  The
    same weights and results (to float rounding) on every backend.
    """

    def convolution_op(self, inputs, kernel):
        if kernels.torch_channels_last(self, inputs):
            return kernels.torch_conv2d(self, inputs, kernel)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="brainprop")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D`, which on PyTorch pools channels-last images in
    place (as `Conv2D`); the same results on every backend."""

    def call(self, inputs):
        if self.padding == "valid" and kernels.torch_channels_last(self, inputs):
            return kernels.torch_max_pool2d(self, inputs)
        return super().call(inputs)
