"""What every benchmark shares: the machine, synthetic data, and side-by-side timing.

The machines are shared and noisy, so nothing is timed alone: the contenders of one
comparison take turns step by step in one process (the order rotates each step), and
figures are medians over the timed steps after warm-up.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

# Run as `python benchmarks/<script>.py` from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# CIFAR-shaped inputs (MNIST for dense, the only architecture MNIST-only in spirit).
INPUT_SHAPES = {"dense": (28, 28, 1), "conv": (32, 32, 3), "loccon": (32, 32, 3),
                "deep": (32, 32, 3)}
N_CLASSES = 10


def machine() -> dict[str, str]:
    """CPU model, core count, backend and versions, for the results table."""
    import keras

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def synthetic_batch(shape: tuple[int, ...], batch: int, seed: int = 0):
    """Float32 images in [0, 1] and int32 labels, as the pipeline delivers them."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, batch).astype(np.int32)
    return x, y


def side_by_side(
    contenders: dict[str, Callable[[], object]], steps: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of each contender, calls interleaved, warm-up calls dropped.

    Each contender must block until its work is done (return host values).
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(warmup + steps):
        shift = step % len(names)  # rotate who goes first, so drift hits all alike
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            elapsed = time.perf_counter() - start
            if step >= warmup:
                times[name].append(elapsed)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over steps of the per-step ratio of two interleaved contenders."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator], strict=True))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_json(path: str | None, payload: dict) -> None:
    """Print the results as JSON, and write them to `path` when given."""
    text = json.dumps(payload, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
