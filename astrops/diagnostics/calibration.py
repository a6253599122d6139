"""Calibration diagnostics of posterior samples over a held-out set: numbers, not figures.

Every function takes the truths θ* (N, P) and posterior samples (N, L, P) drawn for each spectrum
(a flow's own, or a Gaussian head's predictive distribution), or the truths' PIT values F(θ*) (N,
P), and returns plain arrays. Each diagnostic can pass a miscalibrated posterior on its own — SBC
ranks are marginal and blind to a posterior that is right on average but wrong per spectrum; TARP
tests the joint with random reference points and can miss a marginal that is too wide in one
parameter and too narrow in another — so the suite reports them side by side (Lemos et al. 2023
show both failure kinds).

* Expected coverage of central credible intervals at levels 0.05 … 0.95, with the band a calibrated
  posterior's coverage falls in (binomial, 95 % pointwise).
* SBC ranks (Talts et al. 2018, arXiv:1804.06788): the rank of θ* among the L samples is uniform on
  {0, …, L} for a calibrated posterior; uniformity tested by χ² over rank bins, and the ECDF of the
  fractional ranks drawn with simultaneous 95 % bands (Säilynoja, Bürkner & Vehtari 2022, Stat.
  Comput. 32, 32: the band by simulation, their §2.2).
* TARP (Lemos, Coogan, Hezaveh & Perreault-Levasseur 2023, ICML, arXiv:2302.03026): expected
  coverage of balls around random reference points, on standardised parameters, references drawn
  near each posterior; the area to curve (ATC) as sbi computes it, mean and sd over 5 draws.
"""

from __future__ import annotations

import numpy as np

# SBC's ranks live in astrops.scores (the reference uses them too); re-exported here
from astrops.scores import rank_bins, sbc_ranks, sbc_uniformity  # noqa: F401

LEVELS = np.round(np.arange(0.05, 0.951, 0.05), 2)  # central credible levels of the coverage curve
ECDF_POINTS = 100  # where the ECDF bands are evaluated
BAND_SIMULATIONS = 2000  # uniform samples behind a simultaneous band or a null interval
# credibility levels α of the TARP curve (sbi's num_bins = 100)
TARP_GRID = np.linspace(0.0, 1.0, 101)
TARP_SEEDS = 5  # reference draws behind every reported ATC (mean and sd over them)


def coverage_curve(pit: np.ndarray, levels: np.ndarray = LEVELS) -> dict[str, np.ndarray]:
    """Empirical coverage (P, len(levels)) of central intervals — the interval at level α holds θ*
    when
    |PIT − ½| ≤ α/2 — and the 95 % binomial band (2, len(levels)) a calibrated posterior's lies
    in."""
    from scipy.stats import binom

    n = len(pit)
    covered = (np.abs(pit - 0.5)[:, :, None] <= levels[None, None, :] / 2 + 1e-12).mean(0)
    band = np.stack([binom.ppf(0.025, n, levels), binom.ppf(0.975, n, levels)]) / max(n, 1)
    return {"levels": levels, "coverage": covered, "band": band}


def fractional_ranks(ranks: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """Ranks spread uniformly within their cell, (r + U) / (L + 1): exactly uniform on [0, 1] when
    the posterior is calibrated, so the continuous ECDF bands apply without a discreteness
    correction."""
    u = np.random.default_rng(seed).uniform(size=ranks.shape)
    return (ranks + u) / (n_samples + 1)


def ecdf_band(n: int, points: np.ndarray, level: float = 0.95, seed: int = 0) -> np.ndarray:
    """Simultaneous ``level`` band (2, K) for the ECDF of ``n`` uniform draws at ``points``: by
    simulation, the per-point binomial level γ at which the whole ECDF of a uniform sample stays
    inside ``level`` of the time (Säilynoja et al. 2022, §2.2)."""
    from scipy.stats import binom

    rng = np.random.default_rng(seed)
    counts = np.stack(
        [
            np.searchsorted(np.sort(rng.uniform(size=n)), points, side="right")
            for _ in range(BAND_SIMULATIONS)
        ]
    )  # (S, K)
    tail = np.minimum(binom.cdf(counts, n, points), binom.sf(counts - 1, n, points))
    gamma = np.quantile(2 * tail.min(1), 1 - level)
    return np.stack([binom.ppf(gamma / 2, n, points), binom.ppf(1 - gamma / 2, n, points)]) / n


def ecdf(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """ECDF of ``values`` (N, P) at ``points`` (K,): (P, K)."""
    return np.stack([np.searchsorted(np.sort(v), points, side="right") / len(v) for v in values.T])


def tarp_credibility(
    samples: np.ndarray, truth: np.ndarray, seed: int = 0, references: str = "local"
) -> np.ndarray:
    """(N,) TARP credibility of each truth: how many of the L samples lie nearer than θ* to a
    reference point, spread within its cell like :func:`fractional_ranks` — (k + U) / (L + 1) is
    exactly uniform for a calibrated posterior, where k / L would bias the curve by up to 1 / L.

    Coordinates are standardised by the truths' mean and sd over the set (sbi z-scores θ), so no
    parameter's units dominate the distance. ``references``: ``"local"`` — per spectrum, the
    posterior's own mean plus its sd times a standard normal draw: it depends on x only, which
    Lemos et al. (2023, §3) allow, and puts the balls where a tight posterior's errors show (drawn
    across the prior box they enclose all or none of a tight posterior, and a parameter known to
    2 % of its range adds nothing); ``"box"`` — uniform in the truths' bounding box (sbi's
    default)."""
    rng = np.random.default_rng(seed)
    mu, sd = truth.mean(0), truth.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    s, t = (samples - mu) / sd, (truth - mu) / sd
    if references == "local":
        ref = s.mean(1) + s.std(1) * rng.standard_normal(t.shape)
    elif references == "box":
        ref = rng.uniform(t.min(0), t.max(0), size=t.shape)
    else:
        raise ValueError(f"TARP references are 'local' or 'box', not {references!r}")
    d_samples = np.linalg.norm(s - ref[:, None, :], axis=-1)
    d_truth = np.linalg.norm(t - ref, axis=-1)
    return ((d_samples < d_truth[:, None]).sum(1) + rng.uniform(size=len(truth))) / (
        samples.shape[1] + 1
    )


def tarp_atcs(
    samples: np.ndarray, truth: np.ndarray, seeds: int = TARP_SEEDS, references: str = "local"
) -> np.ndarray:
    """ATC for each of ``seeds`` draws of the references (seeds 0 … seeds − 1): one draw is a
    Monte-Carlo number whose spread over draws is as large as its signal for a few hundred
    spectra."""
    return np.array(
        [tarp_curve(tarp_credibility(samples, truth, s, references))[1] for s in range(seeds)]
    )


def tarp_curve(credibility: np.ndarray, alpha: np.ndarray = TARP_GRID) -> tuple[np.ndarray, float]:
    """Expected coverage probability ECP(α) = P(credibility ≤ α) and the area to curve
    ATC = Σ_{α ≥ ½} (ECP − α) on the grid (sbi's ``check_tarp``; > 0: too wide, < 0: too narrow or
    biased)."""
    ecp = (credibility[:, None] <= alpha[None, :]).mean(0)
    ecp[-1] = 1.0
    return ecp, float((ecp - alpha)[alpha >= 0.5].sum())


def tarp_atc_null(n: int, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Where a calibrated posterior's ATC falls for ``n`` spectra (credibility uniform): central
    ``level`` interval by simulation, the yardstick the ATC itself lacks."""
    rng = np.random.default_rng(seed)
    atcs = [tarp_curve(rng.uniform(size=n))[1] for _ in range(BAND_SIMULATIONS)]
    lo, hi = np.quantile(atcs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def coverage_table(
    pit: np.ndarray,
    xH: np.ndarray,
    parameters: list[str],
    edges: tuple[float, ...] = (0.0, 0.05, 0.5, 0.95, 1.0),
) -> list[dict]:
    """68/95 % coverage with 95 % Clopper-Pearson intervals, for all records and per x̄_HI bin,
    from the truths' PIT values (N, P) (the central interval at level α holds the truth when |PIT −
    ½| ≤ α/2).

    ``xH`` (N,) is the neutral fraction the bins refer to (the middle selected redshift); the
    binomial interval says whether a miss of nominal coverage is more than counting noise.
    """
    from scipy.stats import binomtest

    rows = []
    z = np.abs(pit - 0.5)
    bins = [("all", np.ones(len(z), bool))]
    bins += [
        (f"{lo:g}<xH<={hi:g}", (xH > lo) & (xH <= hi))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    # fully ionized boxes (xH = 0) belong in the first bin
    bins[1] = (f"xH<={edges[1]:g}", xH <= edges[1])
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
    lines = [
        "| x̄_HI bin | parameter | n | coverage 68 % [95 % CI] | coverage 95 % [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bin']} | {r['parameter']} | {r['n']} | {r['coverage68']:.3f} "
            f"[{r['ci68'][0]:.3f}, "
            f"{r['ci68'][1]:.3f}] | {r['coverage95']:.3f} [{r['ci95'][0]:.3f}, "
            f"{r['ci95'][1]:.3f}] |"
        )
    return "\n".join(lines)
