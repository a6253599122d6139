"""Figures of the calibration diagnostics (:mod:`astrops.diagnostics.calibration`), each with the
band a calibrated posterior stays in, so a reader can tell a miss from counting noise at a
glance."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from astrops.parameters import LABELS
from astrops.plotting import plt


def coverage_figure(curve: dict[str, np.ndarray], parameters: list[str]) -> Figure:
    """Empirical against nominal coverage of central credible intervals per parameter, with the 95
    % binomial band of a calibrated posterior: below the band over-confident, above it too wide."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    lv = curve["levels"]
    ax.fill_between(lv, curve["band"][0], curve["band"][1], color="0.8", label="calibrated, 95 %")
    ax.plot([0, 1], [0, 1], color="k", lw=1)
    for j, p in enumerate(parameters):
        ax.plot(lv, curve["coverage"][j], marker="o", ms=3, label=LABELS.get(p, p))
    ax.set_xlabel("credible level of the central interval")
    ax.set_ylabel("fraction of truths inside")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sbc_figure(
    ranks: np.ndarray,
    n_samples: int,
    frac: np.ndarray,
    points: np.ndarray,
    band: np.ndarray,
    p_values: np.ndarray,
    parameters: list[str],
) -> Figure:
    """SBC per parameter: the rank histogram with the 99 % binomial range of a bin's count under
    uniformity (Talts et al. 2018, Fig. 1), and the ECDF of the fractional ranks minus the uniform
    CDF with its simultaneous 95 % band (Säilynoja et al. 2022): ∪ shape over-confident, ∩ too
    wide, a tilt bias."""
    from scipy.stats import binom

    from astrops.diagnostics.calibration import ecdf, rank_bins

    n = len(ranks)
    bins, share = rank_bins(n, n_samples + 1)
    fig, axes = plt.subplots(
        2, len(parameters), figsize=(4.2 * len(parameters), 6.4), squeeze=False
    )
    curves = ecdf(frac, points)
    for j, p in enumerate(parameters):
        counts = np.bincount((ranks[:, j] * bins) // (n_samples + 1), minlength=bins)
        ax = axes[0][j]
        x = np.arange(bins)
        ax.bar(x, counts, width=0.9)
        ax.fill_between(
            x,
            binom.ppf(0.005, n, share),
            binom.ppf(0.995, n, share),
            step="mid",
            color="0.5",
            alpha=0.3,
            zorder=3,
            label="uniform, 99 % per bin",
        )
        ax.set_title(f"{LABELS.get(p, p)}  (χ² p = {p_values[j]:.2g})", fontsize=9)
        ax.set_xlabel(f"rank of the truth among {n_samples} samples (binned)")
        ax = axes[1][j]
        ax.fill_between(points, band[0] - points, band[1] - points, color="0.85")
        ax.plot(points, curves[j] - points)
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("fractional rank")
    axes[0][0].set_ylabel("spectra")
    axes[1][0].set_ylabel("ECDF − uniform")
    fig.tight_layout()
    return fig


def tarp_figure(
    alpha: np.ndarray, ecp: np.ndarray, band: np.ndarray, atc: float, null: tuple[float, float]
) -> Figure:
    """TARP's expected coverage probability against the credibility level, with the simultaneous 95
    % band of a calibrated posterior (the same ECDF band as SBC's: the credibilities are then
    uniform)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.fill_between(alpha, band[0], band[1], color="0.85", label="calibrated, 95 %")
    ax.plot([0, 1], [0, 1], color="k", lw=1)
    ax.plot(alpha, ecp, label="TARP")
    ax.set_xlabel("credibility level α")
    ax.set_ylabel("expected coverage")
    ax.set_title(f"ATC = {atc:.2f} (calibrated: {null[0]:.2f} … {null[1]:.2f})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
