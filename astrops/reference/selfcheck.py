"""Does the reference cover its own truths? Mocks drawn from its own generative model.

θ is drawn from the uniform prior; the mock is one draw of N(mean(θ), C(θ)), the emulator's mean
with its cosmic variance (correlated across redshifts and k, as the emulator's residuals are), its
own error and the observation's noise — exactly what the likelihood assumes. The reference's
posterior of such a mock is then exact up to the grid, so its coverage and SBC test the grid, the
likelihood and the sampler apart from the emulator's accuracy (which only real simulations test).

References:
    Talts et al. (2018), Validating Bayesian inference algorithms with simulation-based
    calibration, arXiv:1804.06788.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from astrops.reference.solver import DRAWS, ReferenceSetup, reference_posteriors
from astrops.scores import sbc_ranks, sbc_uniformity

LEVELS = (0.50, 0.68, 0.95)


def generative_mocks(setup: ReferenceSetup, n: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """(θ (n, P), mocks (n, n_z, n_measured)) drawn from the reference's own model, seeded."""
    rng = np.random.default_rng([seed, 0x5E1F])
    box = setup.box
    theta = box[:, 0] + (box[:, 1] - box[:, 0]) * rng.uniform(size=(n, len(box)))
    mean, _ = setup.emulate(theta)
    mocks = []
    for i in range(n):
        chol = torch.linalg.cholesky(setup.covariance_at(theta[i]))
        noise = chol @ torch.as_tensor(rng.standard_normal(chol.shape[0]))
        mocks.append(mean[i] + noise.reshape(mean[i].shape))
    return theta, torch.stack(mocks)


def coverage_and_sbc(samples: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    """Equal-tailed coverage at ``LEVELS`` with its binomial SE, and SBC (ranks among the
    samples, ties broken at random) per parameter, for (n, S, P) samples and (n, P) truths."""
    n = len(truth)
    out: dict[str, Any] = {"n": n, "coverage": {}, "coverage_se": {}}
    for level in LEVELS:
        lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
        out["coverage"][f"{level:g}"] = ((truth >= lo) & (truth <= hi)).mean(0).tolist()
        out["coverage_se"][f"{level:g}"] = float(np.sqrt(level * (1 - level) / n))
    ranks = sbc_ranks(samples, truth, seed)
    out["sbc_p"] = sbc_uniformity(ranks, samples.shape[1]).tolist()
    return out


def self_consistency(
    setup: ReferenceSetup, n: int, seed: int = 0, workers: int = 1
) -> dict[str, Any]:
    """Coverage and SBC of the reference on ``n`` of its own mocks; unresolved grids are counted
    and left out (reported apart, never averaged in)."""
    theta, mocks = generative_mocks(setup, n, seed)
    results = reference_posteriors(setup, mocks, workers=workers, seed=seed)
    resolved = np.array([r[0]["resolved"] for r in results])
    samples = np.stack([r[1] for r in results])[resolved]
    summary = coverage_and_sbc(samples, theta[resolved], seed)
    summary.update(
        n_mocks=n,
        unresolved=int((~resolved).sum()),
        seed=seed,
        draws=DRAWS,
        covariance=setup.covariance,
        emulator_error=setup.emulator_error,
    )
    return summary
