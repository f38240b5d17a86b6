"""The backends' own kernels where Keras 3 composes or copies: the speed of the layers
of `brainprop.nets.layers`, with the same results as Keras' layers (to float rounding).

* Batch normalisation by one fused kernel forward and one backward, as Keras 2 did:
  TensorFlow's `FusedBatchNormV3`, PyTorch's `torch.nn.functional.batch_norm`
  (`fusable`, `fused_batch_norm`), instead of Keras 3's composite of a dozen
  elementwise and reduction operations.
* PyTorch's convolution and pooling on channels-last images in place
  (`torch_channels_last`, `torch_conv2d`, `torch_max_pool2d`): Keras 3.15's torch
  convolution and pooling copy channels-last images into channels-first memory
  (`.contiguous()` after the transpose) and, for the convolution, back into
  channels-last memory for PyTorch's kernel: two copies of every layer's input per call,
  each of which costs a CPU about as much as the ReLU after it.  PyTorch's kernels take a
  (batch, channels, rows, cols) view of channels-last memory as it is.

What they assume of Keras (how `BatchNormalization` moves its statistics, the rule of
"same" padding) is in `brainprop.utils.compat`, with its test.
"""

from __future__ import annotations

import keras

from brainprop.utils import compat

# The backend's own package, where it is the backend (Keras' backend is fixed once started).
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
elif keras.backend.backend() == "torch":
    import torch


# --- fused batch normalisation (TensorFlow, PyTorch) -----------------------------------


# The images' dtypes the fused kernels take, computing in float32 with float32 weights and
# statistics as Keras' layer does: float32, and bfloat16 (Keras' `mixed_bfloat16` policy).
FUSED_DTYPES = ("float32", "bfloat16")


def fusable(layer: keras.layers.BatchNormalization, inputs, mask, training) -> bool:
    """Whether the backend's fused kernel computes what Keras' `layer` would: on the
    TensorFlow (`FusedBatchNormV3`) or PyTorch (`torch.nn.functional.batch_norm`)
    backend, float32 or bfloat16 images (`FUSED_DTYPES`, the layer's compute dtype)
    with channels last, no mask, renorm or synchronisation."""
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "torch"):
        return False
    shape = tuple(inputs.shape)
    return (
        mask is None
        and not layer.renorm
        and not layer.synchronized
        and len(shape) == 4
        and layer.axis % 4 == 3  # channels last
        and layer.compute_dtype in FUSED_DTYPES
        and keras.backend.standardize_dtype(inputs.dtype) == layer.compute_dtype
        and (layer.epsilon >= 1.001e-5 if backend == "tensorflow"  # the kernel's minimum
             # PyTorch's kernel refuses to train on one value a channel
             else not (training and layer.trainable) or shape[0] * shape[1] * shape[2] > 1)
    )


def fused_batch_norm(layer: keras.layers.BatchNormalization, inputs, training):
    """`layer(inputs, training=training)` by the backend's fused kernel (`fusable` first).

    The fused kernels normalise and give the batch's mean and variance; the moving
    statistics then move as Keras' layer moves them (`compat.move_batch_statistics`).
    Images in bfloat16 are normalised in float32 inside the kernel, with float32 weights,
    statistics and moving statistics, and come out in bfloat16: what Keras' layer
    computes with its casts to float32 and back.
    """
    fused = _torch_batch_norm if keras.backend.backend() == "torch" else _tf_batch_norm
    if not (training and layer.trainable):
        return fused(layer, inputs, False)
    outputs, mean, variance = fused(layer, inputs, True)
    compat.move_batch_statistics(layer, mean, variance)
    return outputs


def _tf_batch_norm(layer, inputs, training):
    """`FusedBatchNormV3`: the outputs by the moving statistics, or (`training`) the
    outputs and the batch's mean and biased variance."""
    channels = inputs.shape[-1]
    gamma = layer.gamma.value if layer.scale else tf.ones((channels,), tf.float32)
    beta = layer.beta.value if layer.center else tf.zeros((channels,), tf.float32)
    if not training:
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, mean=layer.moving_mean.value,
            variance=layer.moving_variance.value, epsilon=layer.epsilon,
            is_training=False,
        )
        return outputs
    outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=layer.epsilon, is_training=True
    )
    count = tf.cast(tf.size(inputs) // channels, mean.dtype)
    return outputs, mean, unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))


def _torch_batch_norm(layer, inputs, training):
    """`torch.nn.functional.batch_norm`, as `_tf_batch_norm`.  The images, channels
    last, are handed over as a (batch, channels, rows, cols) view of the same memory,
    which PyTorch's kernel reads in place (its channels-last layout); the batch's
    statistics come back in two buffers that the kernel moves all the way (momentum 1)."""
    images = inputs.permute(0, 3, 1, 2)
    if not images.is_contiguous(memory_format=torch.channels_last):
        images = images.contiguous(memory_format=torch.channels_last)  # else far slower
    gamma = layer.gamma.value if layer.scale else None
    beta = layer.beta.value if layer.center else None
    if not training:
        return torch.nn.functional.batch_norm(
            images, layer.moving_mean.value, layer.moving_variance.value, gamma, beta,
            training=False, eps=layer.epsilon,
        ).permute(0, 2, 3, 1)
    mean, unbiased_variance = (torch.zeros(inputs.shape[-1], dtype=torch.float32,
                                           device=inputs.device) for _ in range(2))
    outputs = torch.nn.functional.batch_norm(
        images, mean, unbiased_variance, gamma, beta, training=True, momentum=1.0,
        eps=layer.epsilon,
    )
    count = inputs.numel() // inputs.shape[-1]
    return outputs.permute(0, 2, 3, 1), mean, unbiased_variance * ((count - 1) / count)


# --- PyTorch's channels-last kernels -----------------------------------------------------


def torch_channels_last(layer, inputs) -> bool:
    """Whether `layer` (a 2-D convolution or pooling) can hand `inputs` to PyTorch's
    kernel as they lie: on the torch backend, images with channels last."""
    return (keras.backend.backend() == "torch" and layer.data_format == "channels_last"
            and len(inputs.shape) == 4)


def torch_conv2d(layer: keras.layers.Conv2D, inputs, kernel):
    """`layer.convolution_op(inputs, kernel)` by `torch.nn.functional.conv2d` on the
    images in place (`torch_channels_last` first)."""
    images = inputs.permute(0, 3, 1, 2)
    kernel = keras.ops.convert_to_tensor(kernel).permute(3, 2, 0, 1)  # (out, in, rows, cols)
    padding = 0
    if layer.padding == "same":
        (top, bottom), (left, right) = (
            compat.same_padding(size, (window - 1) * dilation + 1, stride)
            for size, window, stride, dilation in zip(
                images.shape[2:], layer.kernel_size, layer.strides, layer.dilation_rate, strict=True))
        if top == bottom and left == right:
            padding = (top, left)
        else:
            images = torch.nn.functional.pad(images, (left, right, top, bottom))
    outputs = torch.nn.functional.conv2d(
        images, kernel, stride=layer.strides, padding=padding,
        dilation=layer.dilation_rate, groups=layer.groups)
    return outputs.permute(0, 2, 3, 1)


def torch_max_pool2d(layer: keras.layers.MaxPooling2D, inputs):
    """`layer(inputs)` by `torch.nn.functional.max_pool2d` on the images in place
    (`torch_channels_last` first; "valid" padding)."""
    return torch.nn.functional.max_pool2d(
        inputs.permute(0, 3, 1, 2), layer.pool_size, layer.strides).permute(0, 2, 3, 1)
