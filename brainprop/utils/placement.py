"""Where a run computes, described and checked before a backend starts.

`Placement` names the devices one run's batches are split over and its dtype policy
(`dtype_policy`: float32, or one of Keras' mixed policies for `--mixed-precision`);
`brainprop.utils.devices` puts it in place once Keras has started.  `cpu_bfloat16`
reads what this machine's CPU computes bfloat16 with, for the note a CPU run prints.  The checks here
refuse, in one line, what `--distribute` cannot do: a backend Keras has no data
parallelism on, a launch over several hosts, batches that do not split evenly.

No Keras here: the command line refuses these before a backend starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from brainprop.utils.errors import BrainPropError

# `--mixed-precision` alone means float16, as before bfloat16 was offered.
MIXED_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# The CPU flags (Linux's /proc/cpuinfo) of bfloat16 arithmetic: AVX512's dot products,
# and AMX's tile units (Intel's Sapphire Rapids and later).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
CPUINFO = Path("/proc/cpuinfo")
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


def dtype_policy(mixed_precision: str | None) -> str:
    """Keras' dtype policy for `--mixed-precision` (None: float32; `float16`, `bfloat16`)."""
    if mixed_precision is None:
        return "float32"
    if mixed_precision not in MIXED_POLICIES:
        raise BrainPropError(
            f"--mixed-precision takes {' or '.join(MIXED_POLICIES)}, not {mixed_precision!r}")
    return MIXED_POLICIES[mixed_precision]


def cpu_bfloat16(cpuinfo: Path = CPUINFO) -> tuple[str, ...]:
    """The bfloat16 features of this machine's CPU (`BFLOAT16_CPU_FLAGS` it lists), in
    that order; empty where it has none or its flags cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            flags.update(value.split())
    return tuple(flag for flag in BFLOAT16_CPU_FLAGS if flag in flags)


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
