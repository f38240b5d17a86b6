"""Where a run computes: one device or all of this machine's, float32 or mixed precision.

`placement` wraps building, compiling and training a model:

* With `distribute`, one run trains data-parallel over every local accelerator
  (every GPU or TPU; the CPU devices where there is none), with Keras' own
  distribution API: `keras.distribution.DataParallel` on JAX (one program over
  the global batch, sharded along the batch), `tf.distribute.MirroredStrategy`
  on TensorFlow (one replica per device, gradients summed).  The batch size
  stays the global batch: each of N devices computes 1/N of it, and every
  update is the mean gradient of the global batch, as on one device.
* With `mixed_precision`, Keras' `mixed_float16` policy: layers compute in
  float16 and keep float32 weights, the output layer and the loss stay float32,
  and `compile` wraps the optimizer in Keras' `LossScaleOptimizer` (dynamic
  loss scaling).

Several hosts are not covered yet: Keras' launch (`keras.distribution.initialize()`,
reading KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and
KERAS_DISTRIBUTION_PROCESS_ID; JAX only) would also need each process to feed its
own share of every batch and one process alone to write the outputs.  A launch
that sets them is refused (`check_one_host`) rather than trained wrongly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator

from brainprop.utils.errors import BrainPropError

MIXED_POLICY = "mixed_float16"
HOSTS_VARIABLE = "KERAS_DISTRIBUTION_NUM_PROCESSES"
# The backends Keras 3.15 trains data parallel on (it has no distribution for torch).
DATA_PARALLEL_BACKENDS = ("jax", "tensorflow")


@dataclasses.dataclass(frozen=True)
class Placement:
    """The devices one run's batches are split over, and its dtype policy."""

    devices: tuple[str, ...]
    policy: str = "float32"

    @property
    def replicas(self) -> int:
        return len(self.devices)

    def describe(self) -> str:
        where = (
            f"data parallel over {self.replicas} devices ({', '.join(self.devices)})"
            if self.replicas > 1 else f"one device ({self.devices[0]})"
        )
        return f"{where}, {self.policy}"


def local_devices() -> list[str]:
    """This machine's accelerators (GPUs or TPUs), else its CPU devices, as
    Keras names them (`gpu:0`, `cpu:1`, ...)."""
    import keras

    if keras.backend.backend() == "torch":
        return _torch_devices()
    return list(keras.distribution.list_devices())


def _torch_devices() -> list[str]:
    """What Keras' torch backend computes on, named as the other backends name devices
    (Keras 3.15 has no `keras.distribution` for torch)."""
    import torch

    if torch.cuda.is_available():
        return [f"gpu:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu:0"]


def has_accelerator() -> bool:
    return not all(name.startswith("cpu") for name in local_devices())


def _tensorflow_replicas() -> int:
    """The replicas of the TensorFlow strategy in scope; 1 without one, or on JAX."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync if tf.distribute.has_strategy() else 1


def replicated_batch_statistics() -> bool:
    """Whether BatchNormalization must gather its statistics over replicas:
    under TensorFlow's MirroredStrategy each device sees only its share of the
    batch (JAX's data parallelism computes over the global batch anyway)."""
    return _tensorflow_replicas() > 1


def steps_per_call(requested: int) -> int:
    """How many batches one compiled call may run: `requested`, except under a
    TensorFlow MirroredStrategy of several replicas, where Keras' loop of several
    steps per call fails to run (`compat.MIRRORED_MULTI_STEP_FAILS`), so one batch
    per call."""
    from brainprop.utils.compat import MIRRORED_MULTI_STEP_FAILS

    return 1 if MIRRORED_MULTI_STEP_FAILS and _tensorflow_replicas() > 1 else requested


def check_can_distribute(backend: str) -> None:
    """Refuse `--distribute` on a backend Keras cannot train data parallel on."""
    if backend not in DATA_PARALLEL_BACKENDS:
        raise BrainPropError(
            f"--distribute needs the jax or tensorflow backend: Keras has no data-parallel "
            f"training on {backend}; run with KERAS_BACKEND=jax, or drop --distribute")


def check_one_host() -> None:
    """Refuse a launch over several hosts, which `--distribute` does not do yet."""
    if os.environ.get(HOSTS_VARIABLE, "1").strip() not in ("", "1"):
        raise BrainPropError(
            f"{HOSTS_VARIABLE} is set for a run over several hosts, which --distribute "
            "does not do yet (it uses this machine's devices): unset it, or run seeds "
            "on separate hosts (see docs/gpus.md#several-hosts)"
        )


def check_even_split(replicas: int, batch_size: int, set_sizes: dict[str, int]) -> None:
    """Every batch, the last of each set included, must split evenly over the
    devices: JAX cannot shard it otherwise, and on TensorFlow uneven shares
    would weight the images of the smaller shares more."""
    if replicas == 1:
        return
    if batch_size % replicas:
        raise BrainPropError(
            f"--distribute splits each batch over {replicas} devices, but the batch "
            f"size {batch_size} is not a multiple of {replicas}: pass --batch-size "
            f"{(batch_size // replicas + 1) * replicas}"
        )
    for name, size in set_sizes.items():
        last = size % batch_size
        if last % replicas:
            raise BrainPropError(
                f"--distribute splits each batch over {replicas} devices, but the last "
                f"batch of the {size} {name} images holds {last}, not a multiple of "
                f"{replicas}: choose a --batch-size (or --validation-split) that "
                "leaves a last batch that splits evenly, or drop --distribute"
            )


@contextlib.contextmanager
def placement(
    distribute: bool = False,
    mixed_precision: bool = False,
    say: Callable[[str], None] = print,
) -> Iterator[Placement]:
    """Build, compile and train inside this; Keras' global state is restored after.

    `say` receives the one-line notes: `--distribute` with one device, and
    `--mixed-precision` on a CPU, where float16 is emulated: it trains and
    learns as in float32, only slower, so it serves to check a run before it
    goes to a GPU (refusing it would forbid that check; it is never faster).
    """
    import keras

    if distribute:
        check_can_distribute(keras.backend.backend())
        check_one_host()
    devices = local_devices()
    if distribute and len(devices) == 1:
        say(f"--distribute: only one device ({devices[0]}) here; training on it")
    if not distribute:
        devices = devices[:1]
    policy = MIXED_POLICY if mixed_precision else "float32"
    if mixed_precision and not has_accelerator():
        say(
            "--mixed-precision: no GPU here; float16 on a CPU is emulated and slower "
            "than float32 (it trains and learns the same: use it to check a run)"
        )
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with _data_parallel(devices):
            yield Placement(tuple(devices), policy)
    finally:
        keras.config.set_dtype_policy(previous_policy)


@contextlib.contextmanager
def _data_parallel(devices: list[str]) -> Iterator[None]:
    if len(devices) == 1:
        yield
        return
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        import tensorflow as tf

        with tf.distribute.MirroredStrategy([f"/{name}" for name in devices]).scope():
            yield
