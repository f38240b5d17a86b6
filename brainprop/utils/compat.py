"""Where the project leans on Keras or TensorFlow beyond their public promises.

Everywhere else the project uses public APIs only.  Each use here says why it is
needed and was checked against Keras `KERAS_CHECKED` (TensorFlow 2.21);
`tests/test_compat.py` holds, for each, the test that fails as soon as it no
longer holds, so that a new Keras shows up as one failing test, not as a run
that quietly differs.

* `seed_without_tensorflow`: a private module of Keras (`keras.src.utils.rng_utils`).
* `move_batch_statistics` and `same_padding`: what the layers' fast kernels
  (`brainprop.nets.kernels`) must do as Keras does: move `BatchNormalization`'s
  statistics, pad "same" convolutions.  The layers of `brainprop.nets.layers` also rely
  on Keras' `Conv2D` convolving through its `convolution_op` method.
* `early_stopping_state`, `checkpoint_best` and their restoring: the undocumented
  counters of `EarlyStopping` and `ModelCheckpoint`, which a resumed run puts back.
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
from keras.src.utils import rng_utils

# The backend's own package, where it is the backend (Keras' backend is fixed once started).
if keras.backend.backend() == "torch":
    import torch

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
    lazy_tensorflow = rng_utils.tf
    rng_utils.tf = _Unavailable()
    try:
        keras.utils.set_random_seed(seed)
    finally:
        rng_utils.tf = lazy_tensorflow


class _Unavailable:
    available = False


# --- what the layers' fast kernels assume (brainprop.nets.kernels) ----------------------


def move_batch_statistics(layer: keras.layers.BatchNormalization, mean, variance) -> None:
    """Move `layer`'s moving statistics by a training batch's `mean` and biased
    `variance`, as Keras' `BatchNormalization` does when it computes them itself.

    Not documented: Keras 3 moves the moving variance by the batch's biased variance
    (the fused kernels give the unbiased one, which `brainprop.nets.kernels` rescales),
    each statistic by `momentum` of its old value.
    """
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(
        layer.moving_variance * momentum + variance * (1.0 - momentum)
    )


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """The zeros before and after `size` values that "same" padding adds (Keras' and
    TensorFlow's rule: any odd one goes after)."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


# --- the state of Keras' callbacks (brainprop.train.resume) -----------------------------

# What `keras.callbacks.EarlyStopping` counts between epochs, and resets in
# `on_train_begin`: epochs without improvement, the best value and its epoch, the epoch
# it stopped at.
EARLY_STOPPING_STATE = ("wait", "best", "best_epoch", "stopped_epoch")


def early_stopping_state(callback: keras.callbacks.EarlyStopping) -> dict:
    """`callback`'s counters (`EARLY_STOPPING_STATE`), to be given back to
    `restore_early_stopping` in a later session of the same training.

    Private: undocumented attributes of `EarlyStopping`.
    """
    return {name: getattr(callback, name) for name in EARLY_STOPPING_STATE}


def restore_early_stopping(callback: keras.callbacks.EarlyStopping, state: dict) -> None:
    """Set `callback`'s counters to `state` (`early_stopping_state`); after its
    `on_train_begin`, which resets them."""
    for name in EARLY_STOPPING_STATE:
        setattr(callback, name, state[name])


def checkpoint_best(callback: keras.callbacks.ModelCheckpoint):
    """The best value of the monitored quantity that `callback` has saved weights for.

    Private: `ModelCheckpoint.best`, undocumented.
    """
    return callback.best


def restore_checkpoint_best(callback: keras.callbacks.ModelCheckpoint, best) -> None:
    """Set the best value `callback` compares each epoch against (`checkpoint_best`)."""
    callback.best = best


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
