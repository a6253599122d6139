"""A flow's recalibration: fitted on one set, judged on another; samples and log_prob one density;
balanced NPE's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrops.diagnostics.calibration import sbc_ranks, sbc_uniformity
from astrops.models.flow import FlowTask
from astrops.models.flow_calibration import reset_base, set_base
from astrops.models.transforms import TargetCodec

BOX = np.stack([np.linspace(0.0, 1.0, 26)] * 3)
LEVELS = np.array([0.5, 0.68, 0.9, 0.95, 0.99])
TRUE_LOC, TRUE_SCALE = torch.tensor([0.2, -0.1, 0.0]), torch.tensor([1.3, 0.8, 1.15])


def _flow(recalibration: str = "base", seed: int = 0, **kw) -> FlowTask:
    """An untrained flow (random weights: a smooth, non-Gaussian conditional density) on the unit
    box, 4 context features."""
    torch.manual_seed(seed)
    codec = TargetCodec.fit(np.random.default_rng(0).uniform(size=(64, 3)), BOX, True)
    return FlowTask(codec, 4, recalibration=recalibration, **kw).eval()


def _truths(task: FlowTask, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contexts and one truth each from the flow with a known base (the true posterior): the flow
    as trained is miscalibrated by exactly the family the base recalibration fits. Leaves the
    base reset."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = task(torch.randn(n, 4, generator=g))
        set_base(task.flow, TRUE_LOC, TRUE_SCALE)
        torch.manual_seed(seed)
        y = task.sample(out, 1)[:, 0]
        reset_base(task.flow)
    return out, y


def _fresh_check(task: FlowTask, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit the task's recalibration on ``n_fit`` truths, then SBC p-values (P,) and central
    coverage (P, 5) at 50 / 68 / 90 / 95 / 99 % on 1 000 other truths (400 samples each)."""
    fit_out, fit_y = _truths(task, n_fit, seed=1)
    out, y = _truths(task, 1000, seed=2)
    task.fit_calibration(fit_out, fit_y)
    torch.manual_seed(3)
    with torch.no_grad():
        samples = task.sample(out, 400).numpy()
    pit = (samples < y.numpy()[:, None]).mean(1)
    cover = (np.abs(pit - 0.5)[..., None] <= LEVELS / 2).mean(0)
    return sbc_uniformity(sbc_ranks(samples, y.numpy()), 400), cover


def test_the_quantile_map_fitted_on_199_spectra_fails_sbc_on_fresh_ones():
    """The legacy 41-knot map learns the noise of 199 PITs (p ≈ 1e-22 over three seeds here)."""
    task = _flow("quantile_map")
    p, _ = _fresh_check(task, 199)
    assert p.min() < 1e-6, p
    with pytest.raises(ValueError, match="quantile map, which has no density"):
        task.log_prob(torch.zeros(1, 4), torch.full((1, 3), 0.5))  # samples moved, density not


def test_the_base_fitted_on_199_spectra_covers_fresh_ones_at_every_level():
    """Two numbers per parameter fitted on the same 199 truths: coverage within 3 binomial SE of
    nominal at every level on 1 000 fresh truths, SBC far from the map's failure. (SBC at n = 1 000
    still sees a 199-truth fit in some seeds, p = 4e-5 … 0.014 over three: the shipped fits use
    thousands of truths where the data allow, docs/posteriors.md.)"""
    task = _flow("base")
    p, cover = _fresh_check(task, 199)
    se = np.sqrt(LEVELS * (1 - LEVELS) / 1000)
    assert (np.abs(cover - LEVELS) <= 3 * se).all(), cover
    assert p.min() > 1e-4, p
    # the raw flow fails the same checks: they can see this miscalibration
    reset_base(task.flow)
    out, y = _truths(task, 1000, seed=2)
    torch.manual_seed(3)
    with torch.no_grad():
        raw = task.sample(out, 400).numpy()
    assert sbc_uniformity(sbc_ranks(raw, y.numpy()), 400).min() < 1e-6


@pytest.mark.parametrize("latent", ["logit", "probit"])
def test_samples_and_log_prob_describe_one_recalibrated_distribution(latent):
    """A histogram of 400 000 samples of a recalibrated flow against exp(log_prob) integrated over
    the same 4 × 4 × 4 cells of the box, in either latent space. The integral substitutes θ(z)
    (the box map's derivative by autograd, not the code under test): a base wider than the prior
    piles probit density up at the box's edges, where a midpoint rule in θ fails."""
    task = _flow(latent=latent)
    set_base(task.flow, TRUE_LOC, TRUE_SCALE)
    edges = torch.linspace(0, 1, 5)
    z_edges = task.to_latent(edges[:, None].expand(-1, 3))[:, 0].clone()
    z_edges[0], z_edges[-1] = (-8.0, 8.0) if latent == "logit" else (-6.0, 6.0)
    steps = 16  # midpoints a cell, per dimension
    width = (z_edges[1:] - z_edges[:-1]) / steps
    mids = (z_edges[:-1, None] + width[:, None] * (torch.arange(steps) + 0.5)).reshape(-1)
    z = torch.stack(torch.meshgrid(mids, mids, mids, indexing="ij"), -1).reshape(-1, 3)
    z.requires_grad_(True)
    theta = task.from_latent(z)
    (jac,) = torch.autograd.grad(theta.sum(), z)  # dθ/dz per dimension: the map is elementwise
    dz = width.repeat_interleave(steps)
    volume = torch.stack(torch.meshgrid(dz, dz, dz, indexing="ij"), -1).reshape(-1, 3).prod(-1)
    with torch.no_grad():
        out = task(torch.randn(1, 4, generator=torch.Generator().manual_seed(5)))
        torch.manual_seed(6)
        s = task.sample(out, 400_000)[0].numpy()
        hist = np.histogramdd(s, bins=[edges.numpy()] * 3)[0] / len(s)
        dens = task.log_prob(out.expand(len(z), -1), theta.detach()).exp()
        mass = (dens * jac.prod(-1) * volume).numpy()
        reset_base(task.flow)
        raw = task.log_prob(out.expand(len(z), -1), theta.detach()).exp() * jac.prod(-1)
        raw_mass = (raw * volume).numpy()
    n = steps
    cells = mass.reshape(4, n, 4, n, 4, n).sum((1, 3, 5))
    se = np.sqrt(cells * (1 - cells) / len(s))
    assert np.abs(hist - cells).max() < 5 * se.max() + 2e-3, np.abs(hist - cells).max()
    assert abs(cells.sum() - 1) < 0.015  # the quadrature, and the mass beyond its ends
    # the recalibration changed the density: the same check against the raw flow fails
    assert np.abs(hist - raw_mass.reshape(4, n, 4, n, 4, n).sum((1, 3, 5))).max() > 0.01


@pytest.mark.parametrize("latent", ["logit", "probit"])
def test_balanced_npe_adds_the_balance_penalty_to_the_nll(latent):
    """The prior's latent density is the logistic (logit) or the standard normal (probit)."""
    plain, balanced = _flow(latent=latent), _flow(balance=100.0, latent=latent)
    out, y = _truths(plain, 256, seed=7)
    with torch.no_grad():
        nll = float(plain.loss(out, y))
        z = plain.to_latent(y)
        u = (y - 0.0) / 1.0  # the unit box
        if latent == "logit":
            log_prior = torch.log(u * (1 - u)).sum(-1)  # d logit⁻¹ / dz = u (1 − u)
        else:
            log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        joint = torch.sigmoid(plain.flow(out).log_prob(z) - log_prior).mean()
        marginal = torch.sigmoid(plain.flow(out.roll(1, 0)).log_prob(z) - log_prior).mean()
        expected = nll + 100.0 * float(joint + marginal - 1) ** 2
        assert float(balanced.loss(out, y)) == pytest.approx(expected, rel=1e-5)
    assert float(balanced.loss(out, y)) > nll
    with pytest.raises(ValueError, match="recalibration must be one of"):
        _flow("isotonic")
    with pytest.raises(ValueError, match="latent one of"):
        _flow(latent="tanh")
