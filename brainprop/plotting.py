"""Figures written to files: matplotlib without a display, saved atomically.

The one place that picks matplotlib's backend ("Agg", files only), so that plotting
works on a machine without a display whichever module draws first.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brainprop.atomic import write_atomically  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, paths: list[Path]) -> list[Path]:
    """Write `fig` to each path (format from the suffix), each atomically; close it."""
    for path in paths:
        write_atomically(path, lambda partial: fig.savefig(partial, format=path.suffix[1:]))
    plt.close(fig)
    return paths
