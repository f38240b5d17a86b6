"""Figures written to files: matplotlib without a display, saved atomically.

The one place that picks matplotlib's backend ("Agg", files only), so that plotting
works on a machine without a display whichever module draws first.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from brainprop.utils.atomic import write_atomically  # noqa: E402

__all__ = ["curve_style", "epoch_axis", "legend_below", "plt", "save_figure"]


def save_figure(fig, paths: list[Path]) -> list[Path]:
    """Write `fig` to each path (format from the suffix), each atomically; close it."""
    for path in paths:
        write_atomically(path, lambda partial, kind=path.suffix[1:]: fig.savefig(partial, format=kind))
    plt.close(fig)
    return paths


def curve_style(n_epochs: int) -> dict:
    """Markers on a curve, about twenty at most: a one-epoch run still shows a point."""
    return {"marker": "o", "markersize": 3.5, "markevery": max(1, n_epochs // 20)}


def epoch_axis(ax, n_epochs: int) -> None:
    """Whole epochs on the x axis, from 1 to `n_epochs` with half an epoch to spare."""
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")


def legend_below(ax, ncols: int = 3) -> None:
    """The legend under the axes, where it covers no curve."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=ncols, frameon=False,
              fontsize="small")
