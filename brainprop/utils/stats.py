"""Mean and spread over seeds, as the paper's tables give them."""

from __future__ import annotations

import math

import numpy as np


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    array = np.asarray(values, dtype=float)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else math.nan
    return float(np.mean(array)), std
