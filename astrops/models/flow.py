"""Neural posterior estimation: a conditional normalizing flow q(θ | x) as a task head.

A Gaussian per spectrum cannot represent ζ's one-redshift posterior: the fully ionized plateau
makes it one-sided and often bimodal with R_mfp. Neural posterior estimation trains a conditional
density on simulations by maximum likelihood (Papamakarios & Murray 2016, arXiv:1605.06376;
Lueckmann et al. 2017; Greenberg et al. 2019), with the backbone as the embedding of the spectrum.
The density is a neural spline flow (Durkan et al. 2019, arXiv:1906.04032) from zuko (Rozet et al.,
https://github.com/probabilists/zuko).

**Support = the prior box.** θ ∈ [lo, hi] (the class edges' outer ends, which span the training
priors) is mapped to z = logit((θ − lo) / (hi − lo)) ∈ ℝ³ and the flow models z | x; every sample
maps back inside the box, so no probability falls outside the priors. The training loss is the NLL
of z (it differs from the NLL of θ by the log-Jacobian of the fixed map, which does not depend on
the network).

**Summaries are Monte Carlo**: ``decode`` draws ``n_samples`` posterior samples per spectrum and
reports their mean and standard deviation; ``quantiles`` their empirical quantiles. Samples, not
moments, are what an ensemble combines (an equal-weight mixture is the union of equal numbers of
each member's samples).

**Calibration** (optional, on the validation split; Kuleshov, Fenner & Ermon 2018,
arXiv:1807.00263): the probability integral transform of each truth under its marginal posterior,
PIT = F(θ_true), is uniform for a calibrated model. ``quantile_map`` (P, L) holds the empirical
quantiles of the validation PITs at L nominal levels: the model's own level that is exceeded as
often as the nominal one. Samples are then recalibrated marginal by marginal through their ranks (a
sample at rank level τ moves to the model's quantile at level map(τ)), which keeps the joint rank
structure and the box. It can only move samples within the range the flow sampled: it corrects a
flow that is mildly over- or under-confident, not one whose truths fall outside its samples
altogether.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
import zuko
from torch import nn

from astrops.models import flow_sampling
from astrops.models.tasks import Task
from astrops.models.transforms import TargetCodec
from astrops.scores import QUANTILE_LEVELS, pit, quantile_columns, sample_crps, summarize

N_LEVELS = 41  # knots of the quantile map: nominal levels 0, 0.025, ..., 1
EPS = 1e-6  # truths on the prior's edge: the box is open for the logit
# samples per spectrum behind test metrics, calibration fits and predict's table
TEST_SAMPLES = 1000
# posterior samples alive at once when predicting (~0.5 GB of a flow's intermediates)
CHUNK_SAMPLES = 500_000
MAX_FLOW_WEIGHTS = 50_000_000  # far above any flow here (the default has 41 071 weights)


class FlowTask(Task):
    """Conditional neural spline flow over the parameters in logit space of the prior box."""

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
    ):
        super().__init__()
        self.codec, self.calibrate, self.n_samples = codec, calibrate, int(n_samples)
        self.n_params = codec.mean.numel()
        sizes = {
            "transforms": transforms,
            "bins": bins,
            "context_features": context_features,
            "n_samples": n_samples - 1,
        }
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
        return torch.logit(((theta - lo) / (hi - lo)).clamp(EPS, 1 - EPS))

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self._box()
        # float32 rounding never leaves the box
        return (lo + (hi - lo) * torch.sigmoid(z)).clamp(lo, hi)

    # -- training and density --------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.context(h)  # the flow's context: the backbone's embedding, projected

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.flow(out).log_prob(self.to_latent(y)).mean()

    def log_prob(self, out: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """log q(θ | x) in physical units (B,) — the latent density plus the log-Jacobian of the
        box map."""
        lo, hi = self._box()
        u = ((theta - lo) / (hi - lo)).clamp(EPS, 1 - EPS)
        return self.flow(out).log_prob(torch.logit(u)) - torch.log((hi - lo) * u * (1 - u)).sum(-1)

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

    def fit_calibration(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``quantile_map`` from the validation PITs of the uncalibrated flow (1 000 samples
        each)."""
        self.quantile_map.copy_(identity_map(self.n_params).to(self.quantile_map))
        with torch.no_grad():
            samples = torch.cat([self.sample(chunk, TEST_SAMPLES) for chunk in out.split(512)])
        qmap = fit_quantile_map(samples, y)
        self.quantile_map.copy_(qmap.to(self.quantile_map))
        return {"quantile_map": qmap}

    def calibration_summary(self, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the quantile map does to the nominal 68 % / 95 % central intervals: the model's own
        probability between the mapped levels (1 = no change; < 1 = the flow was too wide)."""
        out = {}
        for name, qmap in factors.items():
            knots = torch.linspace(0.0, 1.0, qmap.shape[1])
            q = QUANTILE_LEVELS
            for tag, (lo, hi) in (
                ("width68", (q["lo68"], q["hi68"])),
                ("width95", (q["lo95"], q["hi95"])),
            ):
                level = [np.interp([lo, hi], knots.numpy(), row.cpu().numpy()) for row in qmap]
                out[f"{name}_{tag}"] = torch.tensor([(b - a) / (hi - lo) for a, b in level])
        return out

    # -- ensembles: an equal-weight mixture of the members' samples ------------------------------
    def combine(self, decs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return summarize(torch.cat([d["samples"] for d in decs], dim=1))

    def fit_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"quantile_map": fit_quantile_map(dec["samples"], y)}

    def apply_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], factors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if "quantile_map" not in factors:
            return dict(dec)
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


def predict_in_chunks(
    model: nn.Module, x: torch.Tensor, n: int = TEST_SAMPLES
) -> dict[str, torch.Tensor]:
    """``model.predict_physical(x)`` with ``n`` posterior samples per spectrum for its flow heads,
    over chunks of spectra so that at most ``CHUNK_SAMPLES`` samples are alive at once (a model
    without a flow head: one chunk, exactly ``predict_physical``)."""
    flows = any(isinstance(m, FlowTask) for m in model.modules())
    size = max(1, CHUNK_SAMPLES // max(int(n), 1)) if flows else max(len(x), 1)
    with posterior_samples(model, n):
        parts = [model.predict_physical(chunk) for chunk in x.split(size)]
    return (
        parts[0]
        if len(parts) == 1
        else {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    )


@contextmanager
def posterior_samples(model: nn.Module, n: int) -> Iterator[None]:
    """Within the block, every flow head in ``model`` decodes enough samples that the model's
    prediction holds at least ``n`` (each of an ensemble's K members ⌈n / K⌉); restored
    afterwards."""
    heads = [m for m in model.modules() if isinstance(m, FlowTask)]
    members = len(getattr(model, "members", [])) or 1
    before = [h.n_samples for h in heads]
    for h in heads:
        h.n_samples = -(-int(n) // members)
    try:
        yield
    finally:
        for h, b in zip(heads, before, strict=True):
            h.n_samples = b


# -- sample-based posterior summaries (flows, flow ensembles) -------------------------------------


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
