"""The prior box ↔ ℝ maps a flow's latent space is built on.

A flow models z = g(u), u = (θ − lo) / (hi − lo) ∈ (0, 1), so every sample maps back inside the
prior box. Which g matters for the tails. Under ``logit`` the uniform prior becomes a logistic
distribution, whose exponential tails a spline flow cannot follow: zuko's splines act on
[−5, 5] and are the identity outside, where the Gaussian base decides. A parameter the spectrum
says little about has a posterior close to its prior, so truths near a prior edge sit at
|ε| of 4…9 in the base: on 1 000 fresh z = 8 spectra, 2–3 % of the base coordinates beyond 3σ
(0.27 % expected), 87–96 % of them for truths within 2 % of an edge (docs/posteriors.md). Under
``probit`` (g = Φ⁻¹) the uniform prior *is* the standard normal base: an uninformative direction
needs no transform at all, and the tails are the base's own.

References:
    Durkan et al. (2019), Neural spline flows, arXiv:1906.04032 (the tail bound, §3.1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LATENTS = ("logit", "probit")
EPS = 1e-6  # truths on the prior's edge: the box is open for either map


def to_latent(u: torch.Tensor, latent: str) -> torch.Tensor:
    """z = g(u) for u in the unit box (clamped to [EPS, 1 − EPS])."""
    u = u.clamp(EPS, 1 - EPS)
    return torch.logit(u) if latent == "logit" else torch.special.ndtri(u)


def from_latent(z: torch.Tensor, latent: str) -> torch.Tensor:
    """u = g⁻¹(z) in [0, 1]."""
    return torch.sigmoid(z) if latent == "logit" else torch.special.ndtr(z)


def log_prior(z: torch.Tensor, latent: str) -> torch.Tensor:
    """(B,) log density of the uniform prior box in latent coordinates, log |du/dz| summed over
    parameters (logistic or standard normal); a flow's physical log-density is its latent one
    minus this and the box's log-volume."""
    if latent == "logit":
        return (F.logsigmoid(z) + F.logsigmoid(-z)).sum(-1)
    return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
