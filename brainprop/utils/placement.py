"""Where a run computes, described and checked before a backend starts.

`Placement` names the devices one run's batches are split over and its dtype policy;
`brainprop.utils.devices` puts it in place once Keras has started.  The checks here
refuse, in one line, what `--distribute` cannot do: a backend Keras has no data
parallelism on, a launch over several hosts, batches that do not split evenly.

No Keras here: the command line refuses these before a backend starts.
"""

from __future__ import annotations

import dataclasses
import os

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
