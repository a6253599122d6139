"""What a person reads after a run: the seed study's metrics table and the standard figures.

Everything here takes plain arrays and names and returns a string, rows or a figure; which columns
a task reports comes from the task (``table_columns``), so nothing here knows the kinds of task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from astrops.parameters import LABELS
from astrops.plotting import plt


def metrics_table(
    results: dict[str, float],
    parameters: Sequence[str],
    columns: Sequence[tuple[str, str]],
    stage: str = "test",
) -> str:
    """The seed's table as markdown: a row per parameter, a column per (header, metric key) of
    ``columns``.

    ``columns`` is the task's ``table_columns`` (regression: RMSE, MAE, MSE, R2-Score;
    classification: Accuracy, Precision, Recall, F1, ...), so the seed study's own tables can be
    set beside it; a metric missing from ``results`` shows as nan rather than shifting the row.
    """
    head = "| Variable | " + " | ".join(c for c, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [head, rule]
    for p in parameters:
        vals = [results.get(f"{stage}/{key}/{p}", float("nan")) for _, key in columns]
        rows.append(f"| {p} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(rows)


def pred_vs_true(
    pred: np.ndarray, true: np.ndarray, parameters: list[str], r2: dict[str, float] | None = None
) -> Figure:
    """Predicted against true per parameter, with the identity line: bias and spread at a
    glance."""
    fig, axes = plt.subplots(1, len(parameters), figsize=(4.2 * len(parameters), 4))
    for j, (ax, p) in enumerate(zip(np.atleast_1d(axes), parameters, strict=True)):
        lo, hi = (
            float(min(true[:, j].min(), pred[:, j].min())),
            float(max(true[:, j].max(), pred[:, j].max())),
        )
        ax.plot([lo, hi], [lo, hi], color="k", lw=1)
        ax.scatter(true[:, j], pred[:, j], s=6, alpha=0.5)
        ax.set_xlabel(f"true {LABELS.get(p, p)}")
        ax.set_ylabel("predicted")
        if r2:
            ax.set_title(f"R² = {r2.get(p, float('nan')):.3f}")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: list, parameters: list[str]) -> Figure:
    """Row-normalised confusion matrices: ordered classes make a good model a narrow diagonal
    band."""
    fig, axes = plt.subplots(1, len(parameters), figsize=(5 * len(parameters), 4.4))
    for ax, cm, p in zip(np.atleast_1d(axes), matrices, parameters, strict=True):
        im = ax.imshow(np.asarray(cm), origin="lower", cmap="viridis", vmin=0, vmax=1)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(LABELS.get(p, p))
        fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    return fig


def training_curves(history: list[dict[str, float]]) -> Figure:
    """Train and validation loss per epoch: over- and under-fitting, and where early stopping
    chose."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    for key in ("train/loss", "val/loss"):
        vals = [h.get(key, np.nan) for h in history]
        if np.isfinite(vals).any():
            ax.plot(epochs, vals, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    values = [h.get(k, np.nan) for h in history for k in ("train/loss", "val/loss")]
    if np.nanmin(values) > 0:  # the Gaussian NLL can be negative: linear axis then
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return fig


def observed_spectra(k: np.ndarray, delta: np.ndarray, sigma: np.ndarray, redshifts: list[float]):
    """Observed Δ²(k) of a few spectra (M, n_z, n_k) with the instrument's ±1σ band, one panel per
    redshift; only the measured bins (finite σ) are drawn: the k-range the model sees."""
    fig, axes = plt.subplots(1, len(redshifts), figsize=(4.2 * len(redshifts), 3.6), squeeze=False)
    for i, (ax, z) in enumerate(zip(axes[0], redshifts, strict=True)):
        measured = np.isfinite(sigma[i])
        for j, spectrum in enumerate(delta[:, i]):
            line = ax.plot(
                k[measured], spectrum[measured], marker="o", ms=2, lw=1, label=f"spectrum {j}"
            )[0]
            ax.fill_between(
                k[measured],
                spectrum[measured] - sigma[i, measured],
                spectrum[measured] + sigma[i, measured],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_xscale("log")
        ax.set_xlabel(r"$k$ [Mpc$^{-1}$]")
        ax.set_title(f"z = {float(z):g}: observed ± 1σ")
    axes[0][0].set_ylabel(r"$\Delta^2_{21}$ [mK$^2$]")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
