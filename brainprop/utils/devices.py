"""Where a run computes, put in place: one device or all of this machine's, float32 or
mixed precision (`brainprop.utils.placement` describes and checks it before a backend
starts).

`placement` wraps building, compiling and training a model:

* With `distribute`, one run trains data-parallel over every local accelerator
  (every GPU or TPU; the CPU devices where there is none), with Keras' own
  distribution API: `keras.distribution.DataParallel` on JAX (one program over
  the global batch, sharded along the batch), `tf.distribute.MirroredStrategy`
  on TensorFlow (one replica per device, gradients summed).  The batch size
  stays the global batch: each of N devices computes 1/N of it, and every
  update is the mean gradient of the global batch, as on one device.
* With `mixed_precision="float16"`, Keras' `mixed_float16` policy: layers compute
  in float16 and keep float32 weights, the output layer and the loss stay float32,
  and `compile` wraps the optimizer in Keras' `LossScaleOptimizer` (dynamic
  loss scaling).  With `"bfloat16"`, Keras' `mixed_bfloat16`: the same, without loss
  scaling (bfloat16 has float32's exponent, so small gradients do not vanish).

Several hosts are not covered yet: Keras' launch (`keras.distribution.initialize()`,
reading KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and
KERAS_DISTRIBUTION_PROCESS_ID; JAX only) would also need each process to feed its
own share of every batch and one process alone to write the outputs.  A launch
that sets them is refused (`check_one_host`) rather than trained wrongly.

Under TensorFlow's `MirroredStrategy` the replicas of a step are TensorFlow's
(`replica_of_step`, `replicated_batch_statistics`); everywhere else one program runs
over the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras

from brainprop.utils.compat import MIRRORED_MULTI_STEP_FAILS
from brainprop.utils.placement import (
    Placement,
    check_can_distribute,
    check_one_host,
    cpu_bfloat16,
    dtype_policy,
)

# The backend's own package, where it is the backend (Keras' backend is fixed once started).
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
elif keras.backend.backend() == "torch":
    import torch


def local_devices() -> list[str]:
    """This machine's accelerators (GPUs or TPUs), else its CPU devices, as
    Keras names them (`gpu:0`, `cpu:1`, ...)."""
    if keras.backend.backend() == "torch":
        return _torch_devices()
    return list(keras.distribution.list_devices())


def _torch_devices() -> list[str]:
    """What Keras' torch backend computes on, named as the other backends name devices
    (Keras 3.15 has no `keras.distribution` for torch)."""
    if torch.cuda.is_available():
        return [f"gpu:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu:0"]


def has_accelerator() -> bool:
    return not all(name.startswith("cpu") for name in local_devices())


def _mirrored() -> tuple[object | None, int]:
    """TensorFlow's replica context (None outside a step) and the replicas of the
    strategy in scope; (None, 1) without a strategy, or on another backend."""
    if keras.backend.backend() != "tensorflow" or not tf.distribute.has_strategy():
        return None, 1
    return tf.distribute.get_replica_context(), tf.distribute.get_strategy().num_replicas_in_sync


def replica_of_step() -> tuple[object, int]:
    """(index, number) of the replica running this step.

    Under TensorFlow's `MirroredStrategy` every device runs the whole step on
    its share of the batch, each with its own copy of every variable, random
    seed state included.  Everywhere else one program runs over the whole
    batch (one device, or JAX's data parallelism, where a random draw covers
    the global batch at once): (0, 1).
    """
    context, replicas = _mirrored()
    if context is None or replicas == 1:
        return 0, 1
    return context.replica_id_in_sync_group, replicas


def replicated_batch_statistics() -> bool:
    """Whether BatchNormalization must gather its statistics over replicas:
    under TensorFlow's MirroredStrategy each device sees only its share of the
    batch (JAX's data parallelism computes over the global batch anyway)."""
    return _mirrored()[1] > 1


def steps_per_call(requested: int) -> int:
    """How many batches one compiled call may run: `requested`, except under a
    TensorFlow MirroredStrategy of several replicas, where Keras' loop of several
    steps per call fails to run (`compat.MIRRORED_MULTI_STEP_FAILS`), so one batch
    per call."""
    return 1 if MIRRORED_MULTI_STEP_FAILS and _mirrored()[1] > 1 else requested


@contextlib.contextmanager
def placement(
    distribute: bool = False,
    mixed_precision: str | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[Placement]:
    """Build, compile and train inside this; Keras' global state is restored after.

    `mixed_precision` is None (float32), `"float16"` or `"bfloat16"`.  `say` receives
    the one-line notes: `--distribute` with one device, and `--mixed-precision` on a
    CPU (`cpu_note`): it trains and learns as in float32 there, so it serves to check
    a run before it goes to a GPU, and refusing it would forbid that check.
    """
    if distribute:
        check_can_distribute(keras.backend.backend())
        check_one_host()
    policy = dtype_policy(mixed_precision)
    devices = local_devices()
    if distribute and len(devices) == 1:
        say(f"--distribute: only one device ({devices[0]}) here; training on it")
    if not distribute:
        devices = devices[:1]
    if mixed_precision and not has_accelerator():
        say(cpu_note(mixed_precision, cpu_bfloat16()))
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with _data_parallel(devices):
            yield Placement(tuple(devices), policy)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def cpu_note(mixed_precision: str, bfloat16_features: tuple[str, ...]) -> str:
    """What `--mixed-precision` does on a CPU with these bfloat16 features
    (`placement.cpu_bfloat16`), in one line."""
    if mixed_precision == "bfloat16" and bfloat16_features:
        return (
            f"--mixed-precision bfloat16: no GPU here; this CPU computes bfloat16 "
            f"({', '.join(bfloat16_features)}): what an epoch gains depends on the "
            "backend and the network (docs/speed.md#bfloat16-on-a-cpu)"
        )
    if mixed_precision == "bfloat16":
        return (
            "--mixed-precision bfloat16: no GPU here and this CPU has no bfloat16 "
            "arithmetic (no avx512_bf16 or amx_bf16 flag): it is emulated and slower than "
            "float32 (it trains and learns the same: use it to check a run)"
        )
    return (
        "--mixed-precision: no GPU here; float16 on a CPU is emulated and slower "
        "than float32 (it trains and learns the same: use it to check a run)"
    )


@contextlib.contextmanager
def _data_parallel(devices: list[str]) -> Iterator[None]:
    if len(devices) == 1:
        yield
        return
    if keras.backend.backend() == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        with tf.distribute.MirroredStrategy([f"/{name}" for name in devices]).scope():
            yield
