"""Is an input like the spectra a model was trained on, noise included? A nearest-simulation χ²
with a conformal p-value.

The score of an input x is its χ² distance to the nearest training simulation,

    s(x) = min_j Σ_{z,k} (x − r_j)² / (σ² + τ² + (f·r_j)²),

in the space the noise is known in: for an observation model, Δ² [mK²] on the kept k-bins, with σ
the observation's thermal 1σ (the noise training adds); for a noiseless model, the model's own
standardised features (σ = 0, f = 0). ``τ`` and ``f`` per (z, k) fit the squared difference between
a training simulation and its nearest neighbour among the others, τ² + (f·Δ²)²: how far apart
neighbouring simulations lie (cosmic variance and the design's spacing, larger where the power is),
so a genuine spectrum between two simulations is not counted as strange. The p-value is conformal
(Vovk, Gammerman & Shafer 2005; Angelopoulos & Bates 2021, arXiv:2107.07511): ``p = (1 +
#{calibration scores ≥ s}) / (n + 1)``, over scores of in-distribution spectra scored exactly as a
new one would be — each training spectrum with its own noise draw against the other simulations
(leave one out), and the validation spectra with several noise draws each. Were the scores
exchangeable, ``P(p ≤ α) ≤ α``; leave-one-out scores are nearly so, and flagging p < α (default
0.01) measured 0.8–2.0 % false alarms on fresh spectra (docs/observations.md).

Why this and not a Mahalanobis distance: measured on a choice set (docs/observations.md), a
Gaussian in feature space misses a noiseless Δ² × 10 (the amplitude direction is the widest one in
a Gaussian fit, 5 % detected at z = 8); a χ² with the noise alone (τ = f = 0) is dominated by
neighbours' differences where the signal dominates, which raises its threshold until redshift
slices in reverse order go unseen (10 % detected); a constant τ, set by the loudest spectra, lets a
pure-noise spectrum in reverse order hide under it (94 % against 99.5 %). The cost is the reference
set kept in the checkpoint (≤ ``MAX_REFERENCE`` simulations × features).

References:
    Sun, Ming, Zhu & Li 2022, "Out-of-distribution detection with deep nearest neighbors",
    arXiv:2204.06507. Greig & Mesinger 2015, MNRAS 449, 4246 (21CMMC's χ² with noise tables).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from astrops.models.transforms import SpectrumTransform

log = logging.getLogger(__name__)

MAX_REFERENCE = 2000  # training simulations kept for the distance (a random subset above it)
MAX_CALIBRATION = 20_000  # calibration scores kept (evenly spaced order statistics above it)
SPACES = ("delta", "features")  # Δ² in mK² (observation models) | standardised features
ALPHA = 0.01  # the default false-alarm rate
MIN_DRAWS = 2000  # noisy calibration scores aimed for (validation spectra × noise draws)
SHARE = 0.5  # ood_reason names the (z, k) cells holding this share of the χ²


def _neighbour_spread(
    residual: np.ndarray, near: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """τ and f per feature from each simulation's difference to its nearest neighbour,
    residual² ≈ τ² + (f·neighbour)² by least squares (f = 0 without ``near``: features)."""
    e2 = residual**2
    if near is None:
        return np.sqrt(e2.mean(0)), np.zeros(residual.shape[1])
    tau2, rel2 = np.empty(e2.shape[1]), np.empty(e2.shape[1])
    for i in range(e2.shape[1]):
        m2 = near[:, i] ** 2
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones(len(m2)), m2], 1), e2[:, i], rcond=None)
        if b < 0:  # no growth with power: τ alone
            a, b = e2[:, i].mean(), 0.0
        elif a < 0:  # all of it in proportion: f alone
            a, b = 0.0, (e2[:, i] * m2).sum() / max((m2**2).sum(), 1e-300)
        tau2[i], rel2[i] = a, b
    return np.sqrt(tau2), np.sqrt(rel2)


def _sq_distances(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N, n_ref) squared Euclidean distances, in float64."""
    d2 = (x**2).sum(1)[:, None] + (ref**2).sum(1)[None, :] - 2.0 * x @ ref.T
    return np.maximum(d2, 0.0)


@dataclass
class NoveltyScore:
    """A fitted score: the reference simulations, the per-(z, k) spread, the calibration scores.

    Attributes:
        space: ``delta`` or ``features`` (what :meth:`p_values` is given).
        reference: (n_ref, n_z·n_kept) noiseless training spectra in that space.
        noise: (n_z·n_kept,) the observation's 1σ (0: noiseless).
        tau, rel: (n_z·n_kept,) the neighbour spread's floor τ and its share f of the power.
        calibration: sorted scores of in-distribution spectra.
        alpha: the false-alarm rate the flag is set for.
    """

    space: str
    reference: np.ndarray
    noise: np.ndarray
    tau: np.ndarray
    rel: np.ndarray
    calibration: np.ndarray
    alpha: float = ALPHA

    def variance(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(n_ref, D) σ² + τ² + (f·r)² of the reference rows: noise, then how far a simulation
        lies from its neighbours, in part in proportion to its power (cosmic variance)."""
        r = self.reference[rows]
        return self.noise**2 + self.tau**2 + (self.rel * r) ** 2

    @classmethod
    def fit(
        cls,
        train: np.ndarray,
        val: np.ndarray,
        noise: np.ndarray | None,
        space: str,
        rng: np.random.Generator,
        alpha: float = ALPHA,
    ) -> NoveltyScore:
        """Fit on noiseless training and validation spectra (N, n_z, n_kept) in ``space``.

        Args:
            noise: (n_z, n_kept) 1σ in that space, or None (noiseless model).
            rng: draws the noise of the calibration spectra and the reference subset.
        """
        train = train.reshape(len(train), -1).astype(np.float64)
        val = val.reshape(len(val), -1).astype(np.float64)
        if len(train) < 2:
            raise ValueError("the novelty score needs at least two training simulations")
        sigma = np.zeros(train.shape[1]) if noise is None else np.nan_to_num(noise).reshape(-1)
        keep = np.sort(rng.permutation(len(train))[:MAX_REFERENCE])
        ref = train[keep].astype(np.float32).astype(np.float64)  # as the checkpoint keeps it
        spread = ref.std(0) + 1e-12
        d2 = _sq_distances(ref / spread, ref / spread)
        np.fill_diagonal(d2, np.inf)
        near = ref[d2.argmin(1)]
        tau, rel = _neighbour_spread(ref - near, near if space == "delta" else None)
        tau = np.where(sigma**2 + tau**2 > 0, tau, spread)  # a constant feature: any scale
        score = cls(space, ref, sigma, tau, rel, np.zeros(0), float(alpha))
        draws = (
            int(np.clip(np.ceil(MIN_DRAWS / max(len(val), 1)), 10, 200))
            if noise is not None
            else 1
        )
        noisy = lambda a: a + sigma * rng.standard_normal(a.shape)  # noqa: E731
        own = np.full(len(train), -1)
        own[keep] = np.arange(len(keep))
        cal = [score.distances(noisy(train), exclude=own)[0]]
        cal += [score.distances(noisy(val))[0] for _ in range(draws)] if len(val) else []
        cal = np.sort(np.concatenate(cal))
        if len(cal) > MAX_CALIBRATION:
            cal = cal[np.linspace(0, len(cal) - 1, MAX_CALIBRATION).round().astype(int)]
        score.calibration = cal
        return score

    def distances(
        self, x: np.ndarray, exclude: np.ndarray | None = None, chunk: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N,) χ² to the nearest reference simulation and (N,) its index; ``exclude`` (N,): a
        reference row each input may not use (-1: none), for leave-one-out scores."""
        x = x.reshape(len(x), -1).astype(np.float64)
        inv = 1.0 / self.variance()
        const = (self.reference**2 * inv).sum(1)
        weighted = self.reference * inv
        best, where = np.empty(len(x)), np.empty(len(x), dtype=int)
        for start in range(0, len(x), chunk):
            xs = x[start : start + chunk]
            d2 = np.maximum((xs**2) @ inv.T - 2.0 * xs @ weighted.T + const[None, :], 0.0)
            if exclude is not None:
                rows = np.flatnonzero(exclude[start : start + chunk] >= 0)
                d2[rows, exclude[start : start + chunk][rows]] = np.inf
            where[start : start + chunk] = d2.argmin(1)
            best[start : start + chunk] = d2.min(1)
        return best, where

    def p_values(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) conformal p-values and (N, n_z, n_kept) each cell's share of the χ²."""
        s, j = self.distances(x)
        n = len(self.calibration)
        above = n - np.searchsorted(self.calibration, s, side="left")
        cells = (x.reshape(len(x), -1) - self.reference[j]) ** 2 / self.variance(j)
        share = cells / np.maximum(cells.sum(1, keepdims=True), 1e-300)
        return (1.0 + above) / (n + 1.0), share.reshape(x.shape)

    def reasons(
        self, p: np.ndarray, share: np.ndarray, redshifts: list[float], k: np.ndarray
    ) -> list[str]:
        """One phrase per input, empty where p ≥ alpha: the p-value and the redshifts and
        k-ranges (1/Mpc) of the cells holding half of the χ²."""
        out = []
        for pi, cells in zip(p, share, strict=True):
            if pi >= self.alpha:
                out.append("")
                continue
            order = np.argsort(cells, axis=None)[::-1]
            n_top = int(np.searchsorted(np.cumsum(cells.reshape(-1)[order]), SHARE)) + 1
            zi, ki = np.unravel_index(order[:n_top], cells.shape)
            where = [
                f"z={redshifts[z]:g} k={k[ki[zi == z]].min():.3g}-{k[ki[zi == z]].max():.3g}"
                for z in sorted(set(zi.tolist()), key=lambda z: -cells[z].sum())
            ]
            out.append(f"unlike the training spectra (p={pi:.2g}): {' and '.join(where)} 1/Mpc")
        return out

    @property
    def min_p(self) -> float:
        """The smallest p-value the calibration set can give (above alpha: the flag never
        fires)."""
        return 1.0 / (len(self.calibration) + 1.0)

    def to_meta(self) -> dict:
        """Plain types for the checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {
            "kind": "nearest_simulation_chi2",
            "space": self.space,
            "alpha": self.alpha,
            "noise": self.noise.tolist(),
            "tau": self.tau.tolist(),
            "rel": self.rel.tolist(),
            "reference": self.reference.astype(np.float32).tolist(),
            "calibration": self.calibration.tolist(),
        }

    @classmethod
    def from_meta(cls, meta: object, n_features: int) -> NoveltyScore:
        """Rebuilt from :meth:`to_meta`'s dict, every field checked (ValueError names the
        first bad one)."""
        if not isinstance(meta, dict) or meta.get("kind") != "nearest_simulation_chi2":
            raise ValueError("its ood block is not a nearest-simulation χ² score")
        if meta.get("space") not in SPACES:
            raise ValueError(f"its ood space {meta.get('space')!r} is not one of {SPACES}")
        alpha = meta.get("alpha")
        if not isinstance(alpha, float) or not 0.0 < alpha < 0.5:
            raise ValueError("its ood alpha is not a rate in (0, 0.5)")
        try:
            noise, tau, rel = (np.asarray(meta[f], dtype=float) for f in ("noise", "tau", "rel"))
            ref = np.asarray(meta["reference"], dtype=np.float64)
            cal = np.asarray(meta["calibration"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise ValueError("its ood arrays are missing or not numbers") from None
        for name, v in (("noise", noise), ("tau", tau), ("rel", rel)):
            if v.shape != (n_features,) or not (np.isfinite(v).all() and (v >= 0).all()):
                raise ValueError(f"its ood {name} is not {n_features} numbers >= 0")
        if not (noise**2 + tau**2 > 0).all():
            raise ValueError("its ood noise and tau are both 0 somewhere")
        if ref.ndim != 2 or ref.shape[1] != n_features or not 1 <= len(ref) <= MAX_REFERENCE:
            raise ValueError(f"its ood reference is not (≤ {MAX_REFERENCE}, {n_features})")
        if not np.isfinite(ref).all():
            raise ValueError("its ood reference holds NaN/inf")
        if cal.ndim != 1 or not 1 <= len(cal) <= MAX_CALIBRATION or np.any(np.diff(cal) < 0):
            raise ValueError("its ood calibration is not a sorted list of scores")
        if not np.isfinite(cal).all():
            raise ValueError("its ood calibration holds NaN/inf")
        return cls(str(meta["space"]), ref, noise, tau, rel, cal, alpha)


def fit_novelty(
    train: np.ndarray,
    val: np.ndarray,
    kept_bins: np.ndarray,
    sigma: np.ndarray | None,
    transform: SpectrumTransform,
    rng: np.random.Generator,
) -> NoveltyScore:
    """The score of a model trained on noiseless Δ² ``train``, ``val`` (N, n_z, n_k): in Δ² on
    the kept bins with the observation's 1σ ``sigma`` (n_z, n_k), or, without one, in the model's
    own ``transform`` features. Seed ``rng`` from the split alone, so every ensemble member and
    training seed carries the same score."""
    if sigma is not None:
        space, noise = "delta", sigma[:, kept_bins]
        train, val = train[:, :, kept_bins], val[:, :, kept_bins]
    else:
        space, noise = "features", None
        with torch.no_grad():
            train, val = (
                transform(torch.as_tensor(np.nan_to_num(a), dtype=torch.float32)).double().numpy()
                for a in (train, val)
            )
    score = NoveltyScore.fit(train, val, noise, space, rng)
    if score.min_p >= score.alpha:
        log.warning(
            "only %d in-distribution scores calibrate the OOD p-value: it cannot fall below "
            "%.2g, so no input will be flagged out of distribution (more training or validation "
            "spectra fix this)",
            len(score.calibration),
            score.min_p,
        )
    return score
