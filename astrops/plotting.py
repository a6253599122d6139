"""Headless figures shared by every layer that draws: matplotlib's backend, saving, corner plots.

Runs happen on clusters and in containers without a display, so figures are rendered with Agg and
written as PNG (or logged to MLflow). This is the one place that picks the backend: each drawing
module imports ``plt`` from here, so none depends on another having been imported first. Corner
plots of posterior samples (``predict.py plot=true``, the calibration suite, the reference) live
here too, below analysis, diagnostics and the reference, which all draw them.

Corner figures use ``corner`` (Foreman-Mackey 2016, JOSS 1, 24): the 1-D marginals with their
median and central 68 % interval, the 2-D marginals with 68 % / 95 % contours, each axis spanning
the prior box the model was trained on (a posterior piled against an edge is visible as such).

References:
    Foreman-Mackey (2016), corner.py: Scatterplot matrices in Python, JOSS 1, 24.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from astrops.parameters import LABELS  # noqa: E402

__all__ = ["corner_figure", "plt", "save_figures", "write_corner_plots"]


def save_figures(
    figures: dict[str, Any], out_dir: str | Path, prefix: str = "", dpi: int = 110
) -> dict[str, Path]:
    """Write each figure as ``out_dir/<prefix><name>.png`` and close it (pyplot keeps figures alive
    until closed); returns the paths by name."""
    paths = {}
    for name, fig in figures.items():
        paths[name] = Path(out_dir) / f"{prefix}{name}.png"
        fig.savefig(paths[name], dpi=dpi)
        plt.close(fig)
    return paths


def corner_figure(
    samples: np.ndarray,
    parameters: list[str],
    prior_box: dict[str, tuple[float, float]],
    title: str = "",
    truths: np.ndarray | None = None,
) -> Any:
    """A corner figure of (n, P) samples."""
    import corner

    fig = corner.corner(
        samples,
        labels=[LABELS.get(p, p) for p in parameters],
        range=[prior_box[p] for p in parameters],
        quantiles=[0.15865525393145707, 0.5, 0.8413447460685429],
        show_titles=True,
        title_fmt=".3g",
        levels=(0.68, 0.95),
        plot_datapoints=False,
        bins=30,
        truths=truths,
        smooth=1.0,
    )
    if title:
        fig.suptitle(title, y=1.02)
    return fig


def write_corner_plots(
    samples: np.ndarray, predictor: Any, stem: str | Path, dpi: int = 90
) -> list[Path]:
    """``<stem>_<i>.png`` for each spectrum's (n, P) samples in ``samples`` (N, n, P); returns the
    paths."""
    paths = []
    for i, s in enumerate(samples):
        fig = corner_figure(s, predictor.parameters, predictor.prior_box, title=f"spectrum {i}")
        paths.append(Path(f"{stem}_{i}.png"))
        fig.savefig(paths[-1], dpi=dpi, bbox_inches="tight")
        plt.close(fig)
    return paths
