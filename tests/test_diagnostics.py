"""The calibration suite (issue 19) on posteriors whose calibration is known by construction: the
truth is drawn from the same Gaussian as the samples (calibrated), or the samples are too narrow,
too wide, or too wide in one parameter and too narrow in another."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrops.diagnostics import calibration as cal
from astrops.diagnostics import calibration_suite

PARAMS = ["a", "b", "c"]
BOX = np.array([[-1.0, 1.0]] * 3)
N, L, S = 1000, 200, 0.2


def _posterior(scale, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Truths and samples around the same centres: θ* ~ N(μ, S²) and samples ~ N(μ, (scale·S)²) per
    parameter."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-0.5, 0.5, (N, 3))
    truth = mu + S * rng.standard_normal((N, 3))
    return truth, mu[:, None, :] + S * np.asarray(scale) * rng.standard_normal((N, L, 3))


def _suite(scale):
    truth, samples = _posterior(scale)
    report = calibration_suite(
        truth, samples, PARAMS, np.linspace(0, 1, N), box=BOX, figures=False
    )
    return (
        report,
        json.loads(report.files["coverage_curve.json"]),
        json.loads(report.files["calibration.json"]),
    )


def test_a_calibrated_posterior_passes_every_diagnostic():
    report, curve, details = _suite([1.0, 1.0, 1.0])
    assert all(report.metrics[f"test/sbc_p/{p}"] > 1e-3 for p in PARAMS), report.metrics
    assert (
        all(details["sbc"]["ecdf_within_band95"].values()) and details["tarp"]["ecp_within_band95"]
    )
    lo, hi = np.array(curve["band95"]["low"]), np.array(curve["band95"]["high"])
    for p in PARAMS:  # a pointwise 95 % band: at most a couple of the 19 levels outside by chance
        cov = np.array(curve["coverage"][p])
        assert ((cov < lo) | (cov > hi)).sum() <= 2, (p, cov)
    assert (
        curve["levels"][0] == 0.05 and curve["levels"][-1] == 0.95 and len(curve["levels"]) == 19
    )


@pytest.mark.parametrize("scale, sign", [(0.6, -1), (1.5, 1)])
def test_too_narrow_or_too_wide_fails_sbc_tarp_and_coverage(scale, sign):
    report, curve, details = _suite([scale] * 3)
    assert all(report.metrics[f"test/sbc_p/{p}"] < 1e-6 for p in PARAMS)
    atc, (null_lo, null_hi) = report.metrics["test/tarp_atc"], details["tarp"]["atc_calibrated_95"]
    assert (atc < null_lo) if sign < 0 else (atc > null_hi), (atc, null_lo, null_hi)
    band = np.array(curve["band95"]["low" if sign < 0 else "high"])
    for p in PARAMS:
        cov = np.array(curve["coverage"][p])
        # from level 0.2: below it the two barely differ
        assert np.all(sign * (cov - band)[3:] > 0), (p, cov)


def test_sbc_flags_what_tarp_averages_away():
    """Too wide in a, too narrow in b: TARP's joint balls average the two (its ATC stays far
    smaller than for a posterior too wide in every parameter); SBC and the coverage curve name both
    parameters."""
    mixed, curve, _ = _suite([1.25, 0.8, 1.0])
    wide, _, _ = _suite([1.25, 1.25, 1.25])
    assert mixed.metrics["test/sbc_p/a"] < 1e-6 and mixed.metrics["test/sbc_p/b"] < 1e-6
    assert mixed.metrics["test/sbc_p/c"] > 1e-3
    assert abs(mixed.metrics["test/tarp_atc"]) < 0.5 * wide.metrics["test/tarp_atc"]
    i68 = curve["levels"].index(0.7)
    assert (
        curve["coverage"]["a"][i68]
        > curve["band95"]["high"][i68]
        > curve["band95"]["low"][i68]
        > curve["coverage"]["b"][i68]
    )


def test_sbc_breaks_ties_at_random_so_a_clamped_calibrated_posterior_passes():
    rng = np.random.default_rng(1)
    # truths and posterior from one distribution clamped at a prior edge (0): half the draws tie
    truth = np.clip(rng.normal(size=(2000, 1)), 0, None)
    samples = np.clip(rng.normal(size=(2000, 200, 1)), 0, None)
    ranks = cal.sbc_ranks(samples, truth)
    assert cal.sbc_uniformity(ranks, 200)[0] > 0.01
    assert np.array_equal(ranks, cal.sbc_ranks(samples, truth))  # seeded
    # counting every tie as above the truth: ranks pile up at 0
    assert cal.sbc_uniformity((samples < truth[:, None, :]).sum(1), 200)[0] < 1e-10


def test_ranks_bins_and_bands_are_exact():
    truth = np.array([[0.5], [2.0]])
    samples = np.array([[[0.0], [1.0], [3.0]], [[0.0], [1.0], [3.0]]])
    assert cal.sbc_ranks(samples, truth).ravel().tolist() == [1, 2]
    bins, share = cal.rank_bins(1000, 1001)  # 1 001 ranks in 20 bins: shares differ by one rank
    assert (
        bins == 20
        and share.sum() == pytest.approx(1.0)
        and set(np.round(share * 1001)) == {50.0, 51.0}
    )
    assert cal.rank_bins(30, 101)[0] == 6  # ≥ 5 expected per bin
    # the simultaneous band holds a uniform sample's whole ECDF 95 % of the time
    points = np.linspace(0, 1, 51)[1:-1]
    band = cal.ecdf_band(300, points)
    rng = np.random.default_rng(3)
    inside = [
        np.all((c >= band[0]) & (c <= band[1]))
        for c in cal.ecdf(rng.uniform(size=(300, 400)), points)
    ]
    assert 0.92 <= np.mean(inside) <= 0.98


def test_report_files_and_figures():
    truth, samples = _posterior([1.0, 1.0, 1.0])
    report = calibration_suite(truth[:60], samples[:60], PARAMS, np.linspace(0, 1, 60), box=BOX)
    assert set(report.files) == {"coverage_curve.json", "calibration.json", "coverage.md"}
    assert report.files["coverage.md"].startswith("| x̄_HI bin |")
    assert set(report.figures) == {
        "coverage_curve",
        "sbc",
        "tarp",
        *(f"corner_{i}" for i in range(6)),
    }
    assert set(report.metrics) == {"test/sbc_p/a", "test/sbc_p/b", "test/sbc_p/c", "test/tarp_atc"}
