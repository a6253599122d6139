"""Heads + losses: what the network predicts and how it is scored.

A task owns the :class:`TargetCodec` (target scaling and class edges) so its outputs can always be
decoded to physical parameter values. Every ``decode`` returns ``value`` (B, P) in physical units;
the Gaussian task adds ``std``, classification ``class``, ``prob`` and ``probs``. Post-hoc
calibration factors are buffers, so a calibrated model is one checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from astrops.models.transforms import TargetCodec


class RegressionTask(nn.Module):
    """One value per parameter, MSE on standardised targets (equal weight per parameter)."""

    kind = "regression"

    def __init__(self, codec: TargetCodec, in_features: int, calibrate: bool = False):
        super().__init__()
        self.codec, self.calibrate = codec, False  # nothing to calibrate without a variance
        self.n_params = codec.mean.numel()
        self.head = nn.Linear(in_features, self.n_params)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, self.codec.encode(y))

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"value": self.codec.decode(out)}


class GaussianTask(nn.Module):
    """Mean and log-variance per parameter, trained by the Gaussian negative log-likelihood.

    ``beta`` > 0 weights each sample's NLL by its (detached) predicted variance to the power beta
    (Seitzer et al. 2022, β-NLL): plain NLL (beta 0) lets the network buy low loss on easy samples by
    shrinking their variance while fitting the mean of hard ones poorly; β = 0.5 trades between NLL
    and MSE. ``var_scale`` (P,) is the post-hoc variance calibration fitted on the validation split.
    """

    kind = "gaussian"

    def __init__(self, codec: TargetCodec, in_features: int, beta: float = 0.0, calibrate: bool = True,
                 min_log_var: float = -14.0, max_log_var: float = 6.0):
        super().__init__()
        self.codec, self.beta, self.calibrate = codec, beta, calibrate
        self.n_params = codec.mean.numel()
        self.min_log_var, self.max_log_var = min_log_var, max_log_var
        self.head = nn.Linear(in_features, 2 * self.n_params)
        self.register_buffer("var_scale", torch.ones(self.n_params))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.head(h).view(-1, 2, self.n_params)
        # a soft clamp keeps the variance finite without killing its gradient at the bounds
        lo, hi = self.min_log_var, self.max_log_var
        log_var = lo + (hi - lo) * torch.sigmoid((out[:, 1] - 0.5 * (lo + hi)) * 4.0 / (hi - lo))
        return torch.stack([out[:, 0], log_var], dim=1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mean, log_var = out[:, 0], out[:, 1]
        nll = 0.5 * (log_var + (self.codec.encode(y) - mean) ** 2 * torch.exp(-log_var) + math.log(2 * math.pi))
        if self.beta:
            nll = nll * torch.exp(log_var.detach() * self.beta)
        return nll.mean() * self.n_params  # summed over parameters, like the classification loss

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        std = torch.exp(0.5 * out[:, 1]) * self.var_scale.sqrt() * self.codec.std
        return {"value": self.codec.decode(out[:, 0]), "std": std}


class ClassificationTask(nn.Module):
    """n_classes logits per parameter; the loss is the sum of the per-parameter cross-entropies.

    The classes are ordered bins of one continuous parameter, so a one-class miss is far better than a
    ten-class one. ``label_sigma`` > 0 (in classes) trains against a Gaussian-smoothed target over
    neighbouring classes instead of a one-hot one, which teaches that order (ordinal soft labels);
    0 is the seed's plain cross-entropy. ``temperature`` (P,) divides the logits at prediction time
    (temperature scaling on the validation split); training uses the raw logits.
    """

    kind = "classification"

    def __init__(self, codec: TargetCodec, in_features: int, calibrate: bool = True, label_sigma: float = 0.0):
        super().__init__()
        self.codec, self.calibrate, self.label_sigma = codec, calibrate, label_sigma
        self.n_params, self.n_classes = codec.mean.numel(), codec.n_classes
        self.head = nn.Linear(in_features, self.n_params * self.n_classes)
        self.register_buffer("temperature", torch.ones(self.n_params))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).view(-1, self.n_params, self.n_classes)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self.codec.to_class(y).reshape(-1)
        if self.label_sigma > 0:
            classes = torch.arange(self.n_classes, device=out.device)
            soft = torch.exp(-0.5 * ((classes[None, :] - target[:, None]) / self.label_sigma) ** 2)
            target = soft / soft.sum(-1, keepdim=True)
        return F.cross_entropy(out.reshape(-1, self.n_classes), target) * self.n_params

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return decode_probs((out / self.temperature[:, None]).softmax(-1), self.codec)


def decode_probs(probs: torch.Tensor, codec: TargetCodec) -> dict[str, torch.Tensor]:
    """Class probabilities (B, P, C) → most probable class, its probability and its centre value."""
    p_max, cls = probs.max(-1)
    centres = codec.class_centres()
    value = torch.gather(centres.expand(len(cls), -1, -1), 2, cls.unsqueeze(-1)).squeeze(-1)
    return {"value": value, "class": cls, "prob": p_max, "probs": probs}
