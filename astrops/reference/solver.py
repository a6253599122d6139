"""The reference posterior of many spectra: one emulator, one observation, one grid per spectrum.

Every spectrum's first grid is the prior box's, so it is emulated once and shared; the spectra are
then spread over ``workers`` forked processes (one torch thread each). The likelihood is
:class:`~astrops.reference.likelihood.PowerSpectrumLikelihood` with the emulator's error term;
``covariance`` is ``theta`` (C(θ) with its log-determinant at every point) or ``fixed`` (C held at
the point of the prior-box grid with the highest θ-dependent ln L). A posterior whose grid did not
resolve is returned with ``resolved`` false: callers report it apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from astrops.reference.grid import N_CELLS, GridPosterior, grid_points, grid_posterior
from astrops.reference.likelihood import PowerSpectrumLikelihood
from astrops.scores import QUANTILE_LEVELS

COVARIANCES = ("fixed", "theta")
COVARIANCE = "fixed"  # the measured choice (docs/posteriors.md): the default everywhere
DRAWS = 4000  # reference samples per spectrum (JS histograms, corner plots, SBC ranks)


@dataclass
class ReferenceSetup:
    """What every spectrum's posterior shares: the emulator restricted to the measured bins."""

    emu: Any  # SpectrumEmulator
    pos: list[int]  # the measured bins' positions among the emulator's bins
    noise: torch.Tensor  # (n_z, n_measured) 1σ thermal noise [mK²]
    box: np.ndarray  # (P, 2) the prior
    model_error: float = 0.0
    covariance: str = COVARIANCE
    emulator_error: bool = True

    def __post_init__(self) -> None:
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance {self.covariance!r}: choose one of {list(COVARIANCES)}")
        n_bins = len(self.emu.bins)
        flat = [i * n_bins + p for i in range(len(self.emu.redshifts)) for p in self.pos]
        self.corr = self.emu.corr[flat][:, flat].double()
        self.eta = self.emu.error_scale[:, self.pos].double() if self.emulator_error else None

    def emulate(self, theta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Emulated mean and cosmic variance (B, n_z, n_measured) at θ (B, P)."""
        with torch.no_grad():
            mean, var = self.emu(torch.as_tensor(theta, dtype=torch.float32))
        return mean[:, :, self.pos].double(), var[:, :, self.pos].double()

    def likelihood(self, data: torch.Tensor) -> PowerSpectrumLikelihood:
        return PowerSpectrumLikelihood(
            data.double(), self.noise.double(), self.model_error, corr=self.corr,
            emulator_scale=self.eta,
        )  # fmt: skip

    def covariance_at(self, theta: np.ndarray) -> torch.Tensor:
        """C(θ) (D, D) of the generative model: what a mock drawn at θ scatters by."""
        mean, cv = self.emulate(theta[None])
        var = self.likelihood(torch.zeros_like(mean[0])).diagonal(mean, cv).flatten()
        s = cv.flatten().sqrt()
        return s[:, None] * self.corr * s[None, :] + torch.diag(var)


_WORK: dict[str, Any] = {}  # what the forked workers share (set before they fork)


def reference_posteriors(
    setup: ReferenceSetup,
    data: torch.Tensor,
    workers: int = 1,
    seed: int = 0,
    draws: int = DRAWS,
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Per spectrum (``data``: (N, n_z, n_measured)): the summary (mean, std, the quantile
    columns, ``resolved``, ``stages``, the χ² at the peak) and ``draws`` posterior samples
    (seeded by ``seed`` and the spectrum's index)."""
    _WORK.clear()
    _WORK.update(setup=setup, data=data, seed=seed, draws=draws)
    _WORK["stage0"] = _prior_grid(setup)  # every spectrum's first grid: emulated once, shared
    if workers > 1 and len(data) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            return pool.map(_posterior_of, range(len(data)))
    return [_posterior_of(i) for i in range(len(data))]


def _prior_grid(setup: ReferenceSetup) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
    """The prior box's first grid (centres) and the emulation there — cached while shared."""
    if _WORK.get("setup") is setup and "stage0" in _WORK:
        return _WORK["stage0"]
    _, mesh = grid_points(setup.box[:, 0], setup.box[:, 1], N_CELLS)
    return mesh, setup.emulate(mesh)


def _emulator(setup: ReferenceSetup):
    """θ → the setup's emulated (mean, variance), answering the prior grid from the cache."""
    cached, out = _prior_grid(setup)

    def emulate(theta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if cached.shape == theta.shape and np.array_equal(cached, theta):
            return out
        return setup.emulate(theta)

    return emulate


def loglike_of(setup: ReferenceSetup, data: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """θ (B, P) → ln L (B,) of one spectrum (n_z, n_measured) under the setup's covariance."""
    lik, emulate = setup.likelihood(data), _emulator(setup)
    if setup.covariance == "fixed":  # C at the prior grid's best θ under C(θ)
        mean0, cv0 = _prior_grid(setup)[1]
        best = int(torch.argmax(lik(mean0, cv0)))
        held = lik.fixed_at(mean0[best], cv0[best])
        return lambda t: held(emulate(t)[0]).numpy()
    return lambda t: lik(*emulate(t)).numpy()


def posterior_of(setup: ReferenceSetup, data: torch.Tensor) -> GridPosterior:
    """The grid posterior of one spectrum (n_z, n_measured)."""
    return grid_posterior(loglike_of(setup, data), setup.box)


def peak_chi2(setup: ReferenceSetup, data: torch.Tensor, post: GridPosterior) -> float:
    """χ² of the data at the posterior's highest cell, with C held there: how well the emulated
    spectrum at its best θ describes the observation (over the measured values' count as dof)."""
    idx = np.unravel_index(int(np.argmax(post.mass)), post.mass.shape)
    theta = np.array([[c[i] for c, i in zip(post.centres, idx, strict=True)]])
    mean, cv = setup.emulate(theta)
    return float(-2 * setup.likelihood(data).fixed_at(mean[0], cv[0])(mean)[0])


def summarize(post: GridPosterior) -> dict[str, Any]:
    """Mean, std, the predict-CSV quantiles, and whether the grid resolved."""
    q = post.quantile(list(QUANTILE_LEVELS.values()))
    return {
        "mean": post.mean(),
        "std": post.std(),
        **{k: q[j] for j, k in enumerate(QUANTILE_LEVELS)},
        "resolved": post.resolved,
        "stages": post.stages,
    }


def _posterior_of(i: int) -> tuple[dict[str, Any], np.ndarray]:
    torch.set_num_threads(1)
    setup, data = _WORK["setup"], _WORK["data"][i]
    post = posterior_of(setup, data)
    summary = {**summarize(post), "chi2": peak_chi2(setup, data, post), "dof": data.numel()}
    return summary, post.sample(_WORK["draws"], np.random.default_rng([_WORK["seed"], i]))
