"""The calibration suite every probabilistic model gets on its test set — after training (logged to
its MLflow run) and over any held-out store (``python -m astrops diagnostics``): one function, one
output.

What it returns (:class:`CalibrationReport`):

* metrics ``{stage}/sbc_p/<parameter>`` (SBC rank uniformity, χ² p-value) and ``{stage}/tarp_atc``
  (beside the ``coverage68``/``coverage95`` keys :mod:`astrops.metrics` already computes);
* ``coverage_curve.json``: coverage of central intervals at 0.05 … 0.95 per parameter with the
  binomial band;
* ``calibration.json``: SBC (p-values, rank bins) and TARP (curve, ATC and the range a calibrated
  posterior's ATC falls in for this many spectra);
* ``coverage.md``: 68/95 % coverage with Clopper-Pearson intervals, overall and per x̄_HI bin;
* figures: ``coverage_curve``, ``sbc``, ``tarp`` and corner plots of six fixed test spectra
  (``corner_0`` … ``corner_5``, the first six of the test split, true values marked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astrops.diagnostics import calibration as cal

N_CORNERS = 6


@dataclass
class CalibrationReport:
    metrics: dict[str, float]
    files: dict[str, str]  # file name -> text (JSON or markdown)
    figures: dict[str, Any] = field(default_factory=dict)


def calibration_suite(
    true: np.ndarray,
    samples: np.ndarray,
    parameters: list[str],
    xH: np.ndarray,
    box: np.ndarray | None = None,
    pit: np.ndarray | None = None,
    stage: str = "test",
    corners: int = N_CORNERS,
    figures: bool = True,
) -> CalibrationReport:
    """Every diagnostic of posterior ``samples`` (N, L, P) against ``true`` (N, P), physical units.

    ``pit`` (N, P), when given, is the model's exact F(θ*) (a Gaussian's Φ((θ* − μ)/σ)) for the
    coverage curve and table; otherwise the fraction of samples below θ*. ``box`` (P, 2) is the
    prior box the corner plots span (default: the truths' range); TARP's references are local
    (:func:`astrops.diagnostics.calibration.tarp_credibility`).
    """
    import json

    n, n_samples = len(true), samples.shape[1]
    ranks = cal.sbc_ranks(samples, true)
    if pit is None:
        pit = ranks / n_samples
    box = np.stack([true.min(0), true.max(0)], 1) if box is None else np.asarray(box, dtype=float)
    curve = cal.coverage_curve(pit)
    p_values = cal.sbc_uniformity(ranks, n_samples)
    ecp, _ = cal.tarp_curve(cal.tarp_credibility(samples, true))  # the figure: seed 0
    atcs = cal.tarp_atcs(samples, true)
    atc = float(atcs.mean())
    null = cal.tarp_atc_null(n)  # one draw's: the 5-draw mean varies no more (convexity)
    points = np.linspace(0, 1, cal.ECDF_POINTS + 1)[1:-1]
    band = cal.ecdf_band(n, points)  # the same simultaneous band serves SBC's ECDF and TARP's ECP
    frac = cal.fractional_ranks(ranks, n_samples)
    sbc_inside = [bool(np.all((c >= band[0]) & (c <= band[1]))) for c in cal.ecdf(frac, points)]
    tarp_band = np.concatenate(
        [[[0.0], [0.0]], cal.ecdf_band(n, cal.TARP_GRID[1:-1]), [[1.0], [1.0]]], axis=1
    )
    tarp_inside = bool(np.all((ecp >= tarp_band[0]) & (ecp <= tarp_band[1])))
    metrics = {f"{stage}/sbc_p/{p}": float(p_values[j]) for j, p in enumerate(parameters)}
    metrics[f"{stage}/tarp_atc"] = atc
    bins, _ = cal.rank_bins(n, n_samples + 1)
    curve_json = {
        "n": n,
        "levels": curve["levels"].tolist(),
        "band95": {"low": curve["band"][0].tolist(), "high": curve["band"][1].tolist()},
        "coverage": {p: curve["coverage"][j].tolist() for j, p in enumerate(parameters)},
    }
    details = {
        "n": n,
        "sbc": {
            "n_samples": n_samples,
            "bins": bins,
            "p_value": {p: float(p_values[j]) for j, p in enumerate(parameters)},
            "ecdf_within_band95": dict(zip(parameters, sbc_inside, strict=True)),
        },
        "tarp": {
            "alpha": cal.TARP_GRID.tolist(),
            "ecp": ecp.tolist(),
            "atc": atc,
            "atc_sd_over_seeds": float(atcs.std(ddof=1)),
            "atc_per_seed": atcs.tolist(),
            "references": "local: posterior mean + sd x N(0, 1), standardised parameters",
            "atc_calibrated_95": list(null),
            "ecp_within_band95": tarp_inside,
            "prior_box": box.tolist(),
        },
    }
    files = {
        "coverage_curve.json": json.dumps(curve_json, indent=1) + "\n",
        "calibration.json": json.dumps(details, indent=1) + "\n",
        "coverage.md": cal.coverage_markdown(cal.coverage_table(pit, xH, parameters)) + "\n",
    }
    report = CalibrationReport(metrics, files)
    if figures:
        from astrops.diagnostics import plots

        report.figures = {
            "coverage_curve": plots.coverage_figure(curve, parameters),
            "sbc": plots.sbc_figure(ranks, n_samples, frac, points, band, p_values, parameters),
            "tarp": plots.tarp_figure(cal.TARP_GRID, ecp, tarp_band, atc, null),
            **_corners(true, samples, parameters, box, corners),
        }
    return report


def _corners(
    true: np.ndarray, samples: np.ndarray, parameters: list[str], box: np.ndarray, corners: int
) -> dict[str, Any]:
    """Corner plots of the first ``corners`` spectra (a fixed choice: the split is seeded), truths
    marked."""
    from astrops.plotting import corner_figure

    prior_box = {p: (float(box[j, 0]), float(box[j, 1])) for j, p in enumerate(parameters)}
    return {
        f"corner_{i}": corner_figure(
            samples[i], parameters, prior_box, title=f"test spectrum {i}", truths=true[i]
        )
        for i in range(min(corners, len(true)))
    }
