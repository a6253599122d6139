"""Neural posterior estimation: a conditional normalizing flow q(θ | x) as a task head.

A Gaussian per spectrum cannot represent ζ's one-redshift posterior: the fully ionized plateau
makes it one-sided and often bimodal with R_mfp. Neural posterior estimation trains a conditional
density on simulations by maximum likelihood (Papamakarios & Murray 2016, arXiv:1605.06376;
Lueckmann et al. 2017; Greenberg et al. 2019), with the backbone as the embedding of the spectrum.
The density is a neural spline flow (Durkan et al. 2019, arXiv:1906.04032) from zuko (Rozet et al.,
https://github.com/probabilists/zuko).

**Support = the prior box.** θ ∈ [lo, hi] (the class edges' outer ends, which span the training
priors) is mapped to z = Φ⁻¹((θ − lo) / (hi − lo)) ∈ ℝ³ (``latent: probit``; ``logit`` before,
whose tails a spline flow cannot follow: :mod:`astrops.models.flow_latent`) and the flow models
z | x; every sample maps back inside the box, so no probability falls outside the priors. The loss
is the NLL of z.

**Summaries are Monte Carlo**: ``decode`` draws ``n_samples`` posterior samples per spectrum and
reports their mean and standard deviation; ``quantiles`` their empirical quantiles. Samples, not
moments, are what an ensemble combines (an equal-weight mixture is the union of equal numbers of
each member's samples).

**Calibration** (on the validation split): a location and scale per dimension of the base noise,
fitted by likelihood (:mod:`astrops.models.flow_calibration`; the legacy quantile map with
``recalibration: quantile_map``). **Balanced NPE** (``balance`` = λ > 0; Delaunoy et al. 2022,
arXiv:2208.13624) adds λ (E_joint σ(log q − log p) + E_marginal σ(log q − log p) − 1)² to the loss
(marginal pairs: x shuffled within the batch; p the uniform prior on the box).

References:
    Rozet et al., zuko (https://github.com/probabilists/zuko); Talts et al. (2018), SBC,
    arXiv:1804.06788.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import zuko
from torch import nn

from astrops.models import flow_latent, flow_sampling
from astrops.models.flow_calibration import (
    fit_base,
    fit_quantile_map,
    identity_map,
    latent_terms,
    quantile_map_widths,
    recalibrate,
    reset_base,
    set_base,
)
from astrops.models.tasks import Task
from astrops.models.transforms import TargetCodec
from astrops.scores import quantile_columns, sample_crps, summarize

# samples per spectrum behind test metrics, calibration fits and predict's table
TEST_SAMPLES = 1000
MAX_FLOW_WEIGHTS = 50_000_000  # far above any flow here (the default has 41 071 weights)
RECALIBRATIONS = ("base", "quantile_map")


class FlowTask(Task):
    """Conditional neural spline flow over the parameters in latent space of the prior box.

    ``latent`` defaults to ``logit`` here because checkpoints saved before the choice existed
    record no value and were trained in it; configs choose ``probit``."""

    kind = "flow"
    probabilistic = True

    def __init__(
        self,
        codec: TargetCodec,
        in_features: int,
        transforms: int = 3,
        hidden_features: list[int] | tuple[int, ...] = (64, 64),
        bins: int = 8,
        n_samples: int = 32,
        calibrate: bool = True,
        context_features: int = 32,
        recalibration: str = "base",
        balance: float = 0.0,
        latent: str = "logit",
    ):
        super().__init__()
        self.codec, self.calibrate, self.n_samples = codec, calibrate, int(n_samples)
        if (
            recalibration not in RECALIBRATIONS
            or latent not in flow_latent.LATENTS
            or not (0.0 <= float(balance) < 1e6)
        ):
            raise ValueError(
                f"flow recalibration must be one of {list(RECALIBRATIONS)}, latent one of "
                f"{list(flow_latent.LATENTS)} and balance a number >= 0: got {recalibration!r}, "
                f"{latent!r}, {balance!r}"
            )
        self.recalibration, self.balance = recalibration, float(balance)
        self.latent = latent
        self.n_params = codec.mean.numel()
        sizes = dict(transforms=transforms, bins=bins, context_features=context_features)
        sizes["n_samples"] = n_samples - 1
        bad = {k: v for k, v in sizes.items() if not (isinstance(v, int) and v >= 1)}
        if (
            bad
            or not hidden_features
            or not all(isinstance(w, int) and w >= 1 for w in hidden_features)
        ):
            raise ValueError(
                "flow sizes must be positive integers (n_samples >= 2): got "
                f"{bad or list(hidden_features)}"
            )
        widths = [
            self.n_params + context_features,
            *hidden_features,
            self.n_params * (3 * bins - 1),
        ]
        size = transforms * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
        if size > MAX_FLOW_WEIGHTS:
            raise ValueError(
                f"a flow of {size:.2g} weights is beyond {MAX_FLOW_WEIGHTS:.0e}: fewer "
                "transforms, bins or hidden features"
            )
        # zuko computes its autoregressive masks with operators PyTorch's shape-only "meta" device
        # lacks: the checkpoint loader's size probe builds on it, so the (size-checked) flow is
        # built on the CPU there
        device = "cpu" if torch.empty(0).device.type == "meta" else None
        with torch.device(device) if device else nullcontext():
            self.flow = zuko.flows.NSF(
                self.n_params,
                context=context_features,
                bins=bins,
                transforms=transforms,
                hidden_features=list(hidden_features),
            )
        # the embedding squeezed to a few context features: zuko concatenates the context to every
        # sample at every autoregressive pass, so its width is paid n_samples x transforms x 3
        # times per spectrum
        self.context = nn.Linear(in_features, context_features)
        self.register_buffer("quantile_map", identity_map(self.n_params))

    # -- the box ↔ ℝ map ---------------------------------------------------------------------
    def _box(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codec.edges[:, 0], self.codec.edges[:, -1]

    def to_latent(self, theta: torch.Tensor) -> torch.Tensor:
        lo, hi = self._box()
        return flow_latent.to_latent((theta - lo) / (hi - lo), self.latent)

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self._box()
        # float32 rounding never leaves the box
        return (lo + (hi - lo) * flow_latent.from_latent(z, self.latent)).clamp(lo, hi)

    # -- training and density --------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.context(h)  # the flow's context: the backbone's embedding, projected

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.to_latent(y)
        log_q = self.flow(out).log_prob(z)
        if not self.balance or len(z) < 2:
            return -log_q.mean()
        log_prior = flow_latent.log_prior(z, self.latent)  # the uniform box, in latent space
        shuffled = self.flow(out.roll(1, 0)).log_prob(z)  # (θ_i, x_{i-1}): the marginal pairs
        balance = torch.sigmoid(log_q - log_prior).mean()
        balance = balance + torch.sigmoid(shuffled - log_prior).mean() - 1
        return -log_q.mean() + self.balance * balance**2

    def log_prob(self, out: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """log q(θ | x) in physical units (B,) — the latent density plus the log-Jacobian of the
        box map. A legacy quantile map moves samples without a density: refused then."""
        if not torch.equal(self.quantile_map, identity_map(self.n_params).to(self.quantile_map)):
            raise ValueError(
                "this flow is recalibrated by a quantile map, which has no density: refit it with "
                "recalibration: base for log_prob"
            )
        lo, hi = self._box()
        z = self.to_latent(theta)
        volume = torch.log(hi - lo).sum()
        return self.flow(out).log_prob(z) - flow_latent.log_prior(z, self.latent) - volume

    # -- samples and summaries -------------------------------------------------------------
    def sample(self, out: torch.Tensor, n: int) -> torch.Tensor:
        """(B, n, P) posterior samples in physical units, recalibrated by ``quantile_map``."""
        z = flow_sampling.sample(self.flow, out, n)  # (n, B, P): zuko's inverse, without waste
        return recalibrate(self.from_latent(z).transpose(0, 1), self.quantile_map)

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return summarize(self.sample(out, self.n_samples))

    def point_estimate(self, out: torch.Tensor) -> torch.Tensor:
        return self.sample(out, 64).mean(1)  # reparameterised: differentiable in the input

    def metric_options(self) -> dict[str, Any]:
        return {"n_classes": None, "distribution": "samples"}

    def reset_calibration(self) -> None:
        """The raw flow: base N(0, 1), quantile map the identity."""
        reset_base(self.flow)
        self.quantile_map.copy_(identity_map(self.n_params).to(self.quantile_map))

    def fit_calibration(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The base recalibration (or the legacy quantile map) fitted on validation outputs."""
        self.reset_calibration()
        if self.recalibration == "base":
            eps, ladj = latent_terms(self.flow, out, self.to_latent(y))
            loc, scale = fit_base(eps[None], ladj[None])
            set_base(self.flow, loc, scale)
            return {"base_loc": loc, "base_scale": scale}
        with torch.no_grad():
            samples = torch.cat([self.sample(chunk, TEST_SAMPLES) for chunk in out.split(512)])
        qmap = fit_quantile_map(samples, y)
        self.quantile_map.copy_(qmap.to(self.quantile_map))
        return {"quantile_map": qmap}

    def calibration_summary(self, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base's location and scale (> 1: the flow was too narrow); for a quantile map, its
        change of the 68 / 95 % intervals' probability."""
        out = {k: v for k, v in factors.items() if k != "quantile_map"}
        if "quantile_map" in factors:
            out.update(quantile_map_widths(factors["quantile_map"]))
        return out

    # -- ensembles: an equal-weight mixture of the members' samples ------------------------------
    def combine(self, decs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return summarize(torch.cat([d["samples"] for d in decs], dim=1))

    def fit_members_calibration(
        self, members: list[nn.Module], x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor] | None:
        """One base recalibration for the mixture, fitted on the members' raw densities (their
        own fits set aside: the split is used once)."""
        if self.recalibration != "base":
            return None
        terms = []
        for m in members:
            m.task.reset_calibration()
            with torch.no_grad():
                terms.append(latent_terms(m.task.flow, m(x), m.task.to_latent(y)))
        eps, ladj = (torch.stack(t) for t in zip(*terms, strict=True))
        loc, scale = fit_base(eps, ladj)
        return {"base_loc": loc, "base_scale": scale}

    def install_ensemble_calibration(
        self, members: list[nn.Module], factors: dict[str, torch.Tensor]
    ) -> None:
        if "base_loc" in factors:
            for m in members:
                set_base(m.task.flow, factors["base_loc"], factors["base_scale"])

    def fit_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"quantile_map": fit_quantile_map(dec["samples"], y)}

    def apply_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], factors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if "quantile_map" not in factors:
            return dict(dec)  # a base recalibration lives in the members
        return summarize(recalibrate(dec["samples"], factors["quantile_map"].to(dec["samples"])))

    def ensemble_loss(self, dec: dict[str, torch.Tensor], y: torch.Tensor) -> float:
        """The mixture's validation objective: CRPS of its samples in training-std units, summed
        over parameters (a flow mixture's density is not at hand once members are combined as
        samples)."""
        return float((sample_crps(dec["samples"], y) / self.codec.std).mean(0).sum())

    def output_columns(
        self, dec: dict[str, torch.Tensor], parameters: list[str]
    ) -> dict[str, np.ndarray]:
        return {**super().output_columns(dec, parameters), **quantile_columns(dec, parameters)}

    def draw(self, dec: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """``n`` of the decoded samples, picked at random (an ensemble's are its members' in
        blocks)."""
        samples = dec["samples"]
        if samples.shape[1] < n:
            raise ValueError(
                f"{samples.shape[1]} samples decoded, {n} asked: decode inside "
                "posterior_samples(model, n)"
            )
        return samples[:, torch.randperm(samples.shape[1], device=samples.device)[:n]]
