"""What a person reads after a run: the seed study's metrics table and the standard figures.

Everything here takes plain arrays and names and returns a string, rows or a figure; which columns a
task reports comes from the task (``table_columns``), so nothing here knows the kinds of task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from astrops.analysis.figures import plt
from astrops.parameters import LABELS


def metrics_table(results: dict[str, float], parameters: Sequence[str], columns: Sequence[tuple[str, str]],
                  stage: str = "test") -> str:
    """The seed's table as markdown: a row per parameter, a column per (header, metric key) of ``columns``.

    ``columns`` is the task's ``table_columns`` (regression: RMSE, MAE, MSE, R2-Score; classification:
    Accuracy, Precision, Recall, F1, ...), so the seed study's own tables can be set beside it; a metric
    missing from ``results`` shows as nan rather than shifting the row.
    """
    head = "| Variable | " + " | ".join(c for c, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [head, rule]
    for p in parameters:
        vals = [results.get(f"{stage}/{key}/{p}", float("nan")) for _, key in columns]
        rows.append(f"| {p} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(rows)


def pred_vs_true(pred: np.ndarray, true: np.ndarray, parameters: list[str],
                 r2: dict[str, float] | None = None) -> Figure:
    """Predicted against true per parameter, with the identity line: bias and spread at a glance."""
    fig, axes = plt.subplots(1, len(parameters), figsize=(4.2 * len(parameters), 4))
    for j, (ax, p) in enumerate(zip(np.atleast_1d(axes), parameters, strict=True)):
        lo, hi = float(min(true[:, j].min(), pred[:, j].min())), float(max(true[:, j].max(), pred[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=1)
        ax.scatter(true[:, j], pred[:, j], s=6, alpha=0.5)
        ax.set_xlabel(f"true {LABELS.get(p, p)}")
        ax.set_ylabel("predicted")
        if r2:
            ax.set_title(f"R² = {r2.get(p, float('nan')):.3f}")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: list, parameters: list[str]) -> Figure:
    """Row-normalised confusion matrices: ordered classes make a good model a narrow diagonal band."""
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
    """Train and validation loss per epoch: over- and under-fitting, and where early stopping chose."""
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


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (scipy imported only when a run has uncertainties to report)."""
    from scipy.stats import norm

    return norm.cdf(z)


def pit_histograms(pit: np.ndarray, parameters: list[str], bins: int = 20) -> Figure:
    """PIT = Φ((y-μ)/σ) per parameter: flat when calibrated, U-shaped when over-confident, domed when under."""
    fig, axes = plt.subplots(1, len(parameters), figsize=(4.2 * len(parameters), 3.6))
    for j, (ax, p) in enumerate(zip(np.atleast_1d(axes), parameters, strict=True)):
        ax.hist(pit[:, j], bins=bins, range=(0, 1), density=True, alpha=0.8)
        ax.axhline(1.0, color="k", lw=1, ls="--")
        ax.set_xlabel("PIT")
        ax.set_title(LABELS.get(p, p))
    fig.tight_layout()
    return fig


def coverage_curves(pit: np.ndarray, parameters: list[str]) -> Figure:
    """Empirical against nominal coverage of central intervals, from the truths' PIT values (N, P): the
    central interval at level α holds the truth when |PIT − ½| ≤ α/2 (any predictive distribution)."""
    levels = np.linspace(0.01, 0.99, 50)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="k", lw=1)
    for j, p in enumerate(parameters):
        ax.plot(levels, (np.abs(pit[:, j] - 0.5)[:, None] <= levels[None, :] / 2).mean(0), label=LABELS.get(p, p))
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def coverage_table(pit: np.ndarray, xH: np.ndarray, parameters: list[str],
                   edges: tuple[float, ...] = (0.0, 0.05, 0.5, 0.95, 1.0)) -> list[dict]:
    """68/95 % coverage with 95 % Clopper-Pearson intervals, for all records and per x̄_HI bin, from the
    truths' PIT values (N, P) (the central interval at level α holds the truth when |PIT − ½| ≤ α/2).

    ``xH`` (N,) is the neutral fraction the bins refer to (the middle selected redshift); the binomial
    interval says whether a miss of nominal coverage is more than counting noise.
    """
    from scipy.stats import binomtest

    rows = []
    z = np.abs(pit - 0.5)
    bins = [("all", np.ones(len(z), bool))]
    bins += [(f"{lo:g}<xH<={hi:g}", (xH > lo) & (xH <= hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    bins[1] = (f"xH<={edges[1]:g}", xH <= edges[1])  # fully ionized boxes (xH = 0) belong in the first bin
    for name, sel in bins:
        n = int(sel.sum())
        for j, p in enumerate(parameters):
            row = {"bin": name, "parameter": p, "n": n}
            for level, width in (("68", 0.34), ("95", 0.475)):
                k = int((z[sel, j] <= width).sum())
                ci = binomtest(k, n).proportion_ci(0.95) if n else None
                row[f"coverage{level}"] = k / n if n else float("nan")
                row[f"ci{level}"] = [ci.low, ci.high] if ci else [float("nan")] * 2
            rows.append(row)
    return rows


def coverage_markdown(rows: list[dict]) -> str:
    """:func:`coverage_table` rows as markdown, for ``coverage.md`` beside the run."""
    lines = ["| x̄_HI bin | parameter | n | coverage 68 % [95 % CI] | coverage 95 % [95 % CI] |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bin']} | {r['parameter']} | {r['n']} | {r['coverage68']:.3f} [{r['ci68'][0]:.3f}, "
                     f"{r['ci68'][1]:.3f}] | {r['coverage95']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |")
    return "\n".join(lines)


def observed_spectra(k: np.ndarray, delta: np.ndarray, sigma: np.ndarray, redshifts: list[float]):
    """Observed Δ²(k) of a few spectra (M, n_z, n_k) with the instrument's ±1σ band, one panel per redshift;
    only the measured bins (finite σ) are drawn: the k-range the model sees."""
    fig, axes = plt.subplots(1, len(redshifts), figsize=(4.2 * len(redshifts), 3.6), squeeze=False)
    for i, (ax, z) in enumerate(zip(axes[0], redshifts, strict=True)):
        measured = np.isfinite(sigma[i])
        for j, spectrum in enumerate(delta[:, i]):
            line = ax.plot(k[measured], spectrum[measured], marker="o", ms=2, lw=1, label=f"spectrum {j}")[0]
            ax.fill_between(k[measured], spectrum[measured] - sigma[i, measured], spectrum[measured] + sigma[i, measured],
                            color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel(r"$k$ [Mpc$^{-1}$]")
        ax.set_title(f"z = {float(z):g}: observed ± 1σ")
    axes[0][0].set_ylabel(r"$\Delta^2_{21}$ [mK$^2$]")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
