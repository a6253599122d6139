"""Headless figures: the one place that picks matplotlib's backend for everything astrops draws.

Runs happen on clusters and in containers without a display, so figures are rendered with Agg and
written as PNG (or logged to MLflow). Each drawing module imports ``plt`` from here, so none
depends on another having been imported first to set the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figures"]


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
