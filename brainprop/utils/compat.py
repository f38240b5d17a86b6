"""Where the project leans on Keras or TensorFlow beyond their public promises.

Everywhere else the project uses public APIs only.  Each use here says why it is
needed and was checked against Keras `KERAS_CHECKED` (TensorFlow 2.21);
`tests/test_compat.py` holds, for each, the test that fails as soon as it no
longer holds, so that a new Keras shows up as one failing test, not as a run
that quietly differs.

* `seed_without_tensorflow`: a private module of Keras (`keras.src.utils.rng_utils`).
* `fusable` and `fused_batch_norm`: TensorFlow's and PyTorch's fused kernels inside
  Keras' `BatchNormalization`, which must update its moving statistics as Keras' does.
* `torch_conv2d` and `torch_max_pool2d`: PyTorch's kernels on channels-last images
  in place, where Keras' torch backend copies them twice.
* `TensorBoardPerEpoch`: how `keras.callbacks.TensorBoard` takes its steps and logs.
* `producer`: which call of which layer made a tensor of a functional model.
* `MIRRORED_MULTI_STEP_FAILS`: a Keras bug worked around (several steps per
  compiled call under a TensorFlow `MirroredStrategy` of several replicas).
* `run_steps_per_execution_on_torch` and `OnePassAtATime`: several steps per call on
  PyTorch, which Keras' torch trainer refuses, and the second end of a pass its epoch
  iterator then gives.

Import this module only once Keras has started (it imports Keras).
"""

from __future__ import annotations

import contextlib
import warnings

import keras

# The Keras release (major.minor) every use below was checked against; requirements.txt
# pins it.  tests/test_compat.py fails on another: check each use again, then move it.
KERAS_CHECKED = "3.15"


# --- the graph of a functional model ------------------------------------------------------


def producer(tensor) -> tuple[keras.Operation, list]:
    """The layer (or nested model) whose call made the symbolic `tensor` of a functional
    model, and that call's input tensors.

    Private: `KerasTensor._keras_history` (operation, node index) and the operation's
    `_inbound_nodes`.  Keras' public `layer.input` and `layer.output` give a layer's
    first call only, and a nested functional model's own graph instead of its call.
    """
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, list(node.input_tensors)


# --- seeding ------------------------------------------------------------------------------


def seed_without_tensorflow(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)` without the import of TensorFlow it makes
    whenever TensorFlow is installed (to seed `tf.data`), for a backend that does not
    use TensorFlow.

    Private: `keras.src.utils.rng_utils.tf`, the lazy TensorFlow module Keras seeds
    when `tf.available`; replaced by an unavailable one for the call.
    """
    from keras.src.utils import rng_utils

    lazy_tensorflow = rng_utils.tf
    rng_utils.tf = _Unavailable()
    try:
        keras.utils.set_random_seed(seed)
    finally:
        rng_utils.tf = lazy_tensorflow


class _Unavailable:
    available = False


# --- fused batch normalisation (TensorFlow, PyTorch) -----------------------------------


def fusable(layer: keras.layers.BatchNormalization, inputs, mask, training) -> bool:
    """Whether the backend's fused kernel computes what Keras' `layer` would: on the
    TensorFlow (`FusedBatchNormV3`) or PyTorch (`torch.nn.functional.batch_norm`)
    backend, float32 images with channels last, no mask, renorm or synchronisation."""
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
        and keras.backend.standardize_dtype(inputs.dtype) == "float32"
        and layer.compute_dtype == "float32"
        and (layer.epsilon >= 1.001e-5 if backend == "tensorflow"  # the kernel's minimum
             # PyTorch's kernel refuses to train on one value a channel
             else not (training and layer.trainable) or shape[0] * shape[1] * shape[2] > 1)
    )


def fused_batch_norm(layer: keras.layers.BatchNormalization, inputs, training):
    """`layer(inputs, training=training)` by the backend's fused kernel (`fusable` first).

    Keras 3 moves the moving statistics by the batch's mean and biased variance, which
    it computes itself; the fused kernels normalise and give the mean and the unbiased
    variance, which is rescaled.  What Keras does is checked by tests/test_compat.py.
    """
    fused = _torch_batch_norm if keras.backend.backend() == "torch" else _tf_batch_norm
    if not (training and layer.trainable):
        return fused(layer, inputs, False)
    outputs, mean, variance = fused(layer, inputs, True)
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(
        layer.moving_variance * momentum + variance * (1.0 - momentum)
    )
    return outputs


def _tf_batch_norm(layer, inputs, training):
    """`FusedBatchNormV3`: the outputs by the moving statistics, or (`training`) the
    outputs and the batch's mean and biased variance."""
    import tensorflow as tf

    channels = inputs.shape[-1]
    gamma = layer.gamma.value if layer.scale else tf.ones((channels,), inputs.dtype)
    beta = layer.beta.value if layer.center else tf.zeros((channels,), inputs.dtype)
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
    count = tf.cast(tf.size(inputs) // channels, inputs.dtype)
    return outputs, mean, unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))


def _torch_batch_norm(layer, inputs, training):
    """`torch.nn.functional.batch_norm`, as `_tf_batch_norm`.  The images, channels
    last, are handed over as a (batch, channels, rows, cols) view of the same memory,
    which PyTorch's kernel reads in place (its channels-last layout); the batch's
    statistics come back in two buffers that the kernel moves all the way (momentum 1)."""
    import torch

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
    mean, unbiased_variance = (torch.zeros(inputs.shape[-1], dtype=inputs.dtype,
                                           device=inputs.device) for _ in range(2))
    outputs = torch.nn.functional.batch_norm(
        images, mean, unbiased_variance, gamma, beta, training=True, momentum=1.0,
        eps=layer.epsilon,
    )
    count = inputs.numel() // inputs.shape[-1]
    return outputs.permute(0, 2, 3, 1), mean, unbiased_variance * ((count - 1) / count)


# --- PyTorch's channels-last kernels -----------------------------------------------------

# Keras 3.15's torch convolution and pooling copy channels-last images into channels-first
# memory (`.contiguous()` after the transpose) and, for the convolution, back into
# channels-last memory for PyTorch's kernel: two copies of every layer's input per call,
# each of which costs a CPU about as much as the ReLU after it.  PyTorch's kernels take a
# (batch, channels, rows, cols) view of channels-last memory as it is.


def torch_channels_last(layer, inputs) -> bool:
    """Whether `layer` (a 2-D convolution or pooling) can hand `inputs` to PyTorch's
    kernel as they lie: on the torch backend, images with channels last."""
    return (keras.backend.backend() == "torch" and layer.data_format == "channels_last"
            and len(inputs.shape) == 4)


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """The zeros before and after `size` values that "same" padding adds (Keras' and
    TensorFlow's rule: any odd one goes after)."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def torch_conv2d(layer: keras.layers.Conv2D, inputs, kernel):
    """`layer.convolution_op(inputs, kernel)` by `torch.nn.functional.conv2d` on the
    images in place (`torch_channels_last` first)."""
    import torch

    images = inputs.permute(0, 3, 1, 2)
    kernel = keras.ops.convert_to_tensor(kernel).permute(3, 2, 0, 1)  # (out, in, rows, cols)
    padding = 0
    if layer.padding == "same":
        (top, bottom), (left, right) = (
            same_padding(size, (window - 1) * dilation + 1, stride)
            for size, window, stride, dilation in zip(
                images.shape[2:], layer.kernel_size, layer.strides, layer.dilation_rate))
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
    import torch

    return torch.nn.functional.max_pool2d(
        inputs.permute(0, 3, 1, 2), layer.pool_size, layer.strides).permute(0, 2, 3, 1)


# --- TensorBoard ------------------------------------------------------------------------


class TensorBoardPerEpoch(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` writing once per epoch, at steps counted from 1.

    Relies on what the callback does with its arguments (not documented): it writes
    `epoch_*` scalars at the step `on_epoch_end` is given, the validation ones from
    the logs `on_test_end` is given, and per-batch scalars only from the logs
    `on_train_batch_end` is given.  `scalars(logs)` makes the numbers it writes.
    """

    def __init__(self, log_dir, scalars):
        super().__init__(str(log_dir), write_graph=False, write_steps_per_second=False)
        self.scalars_of = scalars

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, self.scalars_of(logs))

    def on_test_end(self, logs=None):
        super().on_test_end(self.scalars_of(logs))

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, None)  # per epoch only: no per-batch scalars


# --- several steps per call -------------------------------------------------------------

# Under a TensorFlow MirroredStrategy of several replicas, Keras' loop of several steps
# per compiled call fails to run (Keras 3.15: an unfed placeholder in its
# `multi_step_on_iterator`): one step per call there (`devices.steps_per_call`).
# Checked on several GPUs only; tests/test_compat.py fails on another Keras release.
MIRRORED_MULTI_STEP_FAILS = True


def run_steps_per_execution_on_torch(model: keras.Model) -> None:
    """Let a compiled `model` run `steps_per_execution` batches per call on PyTorch.

    Keras 3.15 refuses `steps_per_execution` > 1 on torch (`make_train_function`
    raises), though its torch `fit`, `evaluate` and `predict` already hand each call
    the list of that many batches (see `OnePassAtATime` for the one thing that goes
    wrong there).  The functions made here take that list and run Keras' own
    `train_step` (`test_step`, `predict_step`) on each batch in turn, under
    `torch.compile` when `jit_compile` is on, as Keras does for one batch: the same
    steps in the same order, with the callbacks and the logs once per call.  Nothing
    changes on another backend or with one step per call.

    Private: the model's `make_*_function` methods are replaced, and the list of
    batches each call receives is Keras' torch loop's, not a documented promise.
    """
    if keras.backend.backend() != "torch" or model.steps_per_execution == 1:
        return
    import torch

    # Keras warns when the last call of a pass finds fewer batches than it asked for,
    # which is every pass whose batches are not a multiple of the steps per call.
    warnings.filterwarnings("ignore", message="Your input ran out of data",
                            category=UserWarning, module="keras")

    def one_by_one(step, no_grad):
        step = torch.compile(step) if model.jit_compile else step

        def steps(batches):
            with torch.no_grad() if no_grad else contextlib.nullcontext():
                return [step(batch) for batch in batches]

        return steps

    def make_train_function(force=False):
        if model.train_function is None or force:
            steps = one_by_one(model.train_step, no_grad=False)
            model.train_function = lambda batches: steps(batches)[-1]
        return model.train_function

    def make_test_function(force=False):
        if model.test_function is None or force:
            steps = one_by_one(model.test_step, no_grad=True)
            model.test_function = lambda batches: steps(batches)[-1]
        return model.test_function

    def make_predict_function(force=False):
        if model.predict_function is None or force:
            steps = one_by_one(model.predict_step, no_grad=True)
            model.predict_function = lambda batches: keras.tree.map_structure(
                lambda *outputs: torch.cat(outputs), *steps(batches))
        return model.predict_function

    model.make_train_function = make_train_function
    model.make_test_function = make_test_function
    model.make_predict_function = make_predict_function


class OnePassAtATime(keras.utils.PyDataset):
    """`batches`, whose epoch ends once per pass over them.

    Keras 3.15's torch `fit`, running several steps per call
    (`run_steps_per_execution_on_torch`), ends a pass whose last call holds fewer
    batches twice (its `EpochIterator` on running out of batches, then at the end of
    the pass): `batches` would skip an epoch's order every such epoch.  An
    end with no batch read since the one before is ignored here, except the first (the
    end `fit` gives before its first epoch, whether it read a batch to build the model
    or not); the sequence is then the one every other backend sees.
    """

    def __init__(self, batches: keras.utils.PyDataset):
        super().__init__()
        self.batches = batches
        self._read = True  # the first end always counts

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        self._read = True
        return self.batches[index]

    def on_epoch_end(self) -> None:
        if self._read:
            self.batches.on_epoch_end()
            self._read = False
