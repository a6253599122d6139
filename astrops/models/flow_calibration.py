"""Recalibrating a flow posterior: an affine map of its base noise, fitted by likelihood.

A flow q(z | x) = N(f(z; x); 0, I) |det ∂f/∂z| that is over- or under-confident is corrected by
giving its base distribution a location and a scale per dimension, N(μ, diag s²), fitted by maximum
likelihood of held-out truths (2 numbers per parameter; for an ensemble, one pair shared by the
members and fitted on the mixture's density). Because the correction lives inside the flow, its
samples, quantiles and ``log_prob`` stay one distribution: the Jacobian of the correction is the
base's own normalisation, nothing is approximated. s > 1 widens a posterior that was too narrow.

Why not the quantile map it replaces (kept below for checkpoints that carry one): a 41-knot
empirical map of a few hundred validation PITs learns their noise. Fitted to 199 PITs of an exactly
calibrated posterior it fails SBC on fresh truths at p ≈ 1e-8 (``tests/test_flow_calibration.py``);
two parameters per marginal fitted on the same 199 truths do not. The map also moved samples
without changing ``log_prob``.

References:
    Kuleshov, Fenner & Ermon 2018, "Accurate uncertainties for deep learning using calibrated
    regression", arXiv:1807.00263 (the quantile map). Guo et al. 2017, arXiv:1706.04599
    (temperature scaling: a low-dimensional correction fitted by likelihood).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import zuko

from astrops.scores import QUANTILE_LEVELS, pit

N_LEVELS = 41  # knots of the legacy quantile map: nominal levels 0, 0.025, ..., 1
MAX_SCALE = 100.0  # a fitted base scale beyond 1/100 … 100 means the fit went wrong, not the flow


def latent_terms(
    flow: zuko.flows.Flow, context: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base noise ε = f(z; x) (N, P) of latent truths z (N, P) and the log-Jacobian (N,)."""
    with torch.no_grad():
        return flow(context).transform.call_and_ladj(z)


def set_base(flow: zuko.flows.Flow, loc: torch.Tensor, scale: torch.Tensor) -> None:
    """Install the base distribution N(loc, diag scale²) (buffers: saved with the checkpoint)."""
    flow.base.loc.copy_(loc.to(flow.base.loc))
    flow.base.scale.copy_(scale.to(flow.base.scale))


def reset_base(flow: zuko.flows.Flow) -> None:
    """The flow as trained: standard normal base."""
    set_base(flow, torch.zeros_like(flow.base.loc), torch.ones_like(flow.base.scale))


def mixture_log_prob(
    eps: torch.Tensor, ladj: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log (1/K) Σ_k q_k(z_i) (N,) for base noises eps (K, N, P) and log-Jacobians ladj (K, N)
    of K flows sharing the base N(loc, diag exp(log_scale)²)."""
    lp = torch.distributions.Normal(loc, log_scale.exp()).log_prob(eps).sum(-1) + ladj
    return torch.logsumexp(lp, 0) - math.log(eps.shape[0])


def fit_base(eps: torch.Tensor, ladj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Base location and scale (P,) maximising the mixture likelihood of the held-out truths."""
    eps, ladj = eps.detach().double(), ladj.detach().double()
    loc = torch.zeros(eps.shape[-1], dtype=torch.float64, requires_grad=True)
    log_s = torch.zeros_like(loc, requires_grad=True)
    opt = torch.optim.LBFGS([loc, log_s], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -mixture_log_prob(eps, ladj, loc, log_s).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    scale = log_s.detach().exp()
    if not (torch.isfinite(loc).all() and (scale.log().abs() < math.log(MAX_SCALE)).all()):
        raise ValueError(f"the base recalibration did not converge (scale {scale.tolist()})")
    return loc.detach().float(), scale.float()


# -- the legacy quantile map (checkpoints trained before the base recalibration) ------------------


def identity_map(n_params: int) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, N_LEVELS).repeat(n_params, 1)


def fit_quantile_map(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(P, L): the empirical quantiles of the PITs at the nominal levels (identity when
    calibrated)."""
    levels = torch.linspace(0.0, 1.0, N_LEVELS, dtype=torch.float64)
    p = pit(samples, y).double().cpu()
    qmap = torch.quantile(p, levels, dim=0).T.contiguous()  # (P, L)
    qmap[:, 0], qmap[:, -1] = 0.0, 1.0
    return torch.cummax(qmap, dim=1).values.float()


def quantile_map_widths(qmap: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a quantile map does to the nominal 68 % / 95 % central intervals: the model's own
    probability between the mapped levels over the nominal one (< 1: the flow was too wide)."""
    knots, out = torch.linspace(0.0, 1.0, qmap.shape[1]).numpy(), {}
    q = QUANTILE_LEVELS
    for tag, (lo, hi) in (("68", (q["lo68"], q["hi68"])), ("95", (q["lo95"], q["hi95"]))):
        level = [np.interp([lo, hi], knots, row.cpu().numpy()) for row in qmap]
        out[f"quantile_map_width{tag}"] = torch.tensor([(b - a) / (hi - lo) for a, b in level])
    return out


def recalibrate(samples: torch.Tensor, qmap: torch.Tensor) -> torch.Tensor:
    """Samples (B, S, P) moved marginal by marginal: the sample at rank level τ becomes the
    marginal's quantile at level ``qmap(τ)`` (linear between knots); the identity map returns the
    samples unchanged."""
    if torch.equal(qmap, identity_map(qmap.shape[0]).to(qmap)):
        return samples
    n = samples.shape[1]
    sorted_s, order = samples.sort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=samples.device).view(1, n, 1).expand_as(order))
    tau = (ranks.to(samples.dtype) + 0.5) / n  # (B, S, P) each sample's own level
    knots = torch.linspace(0.0, 1.0, qmap.shape[1], device=samples.device, dtype=samples.dtype)
    pos = torch.bucketize(tau.contiguous(), knots).clamp(1, len(knots) - 1)
    w = (tau - knots[pos - 1]) / (knots[pos] - knots[pos - 1])
    qm = qmap.to(samples.dtype).T  # (L, P)
    p_idx = torch.arange(qmap.shape[0], device=samples.device).expand_as(pos)
    level = qm[pos - 1, p_idx] * (1 - w) + qm[pos, p_idx] * w  # the model's level for each sample
    idx = (level * n - 0.5).clamp(0, n - 1)
    i0 = idx.floor().long()
    i1 = (i0 + 1).clamp(max=n - 1)
    frac = idx - i0.to(idx.dtype)
    return sorted_s.gather(1, i0) * (1 - frac) + sorted_s.gather(1, i1) * frac
