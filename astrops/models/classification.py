"""The classification head: each parameter's prior range cut into ``n_classes`` ordered classes.

Softmax over the classes with optional Gaussian label smoothing across neighbouring classes (the
classes are ordered), temperature scaling fitted on the validation split (Guo et al. 2017), and
ensembles combined by averaging probabilities.

References:
    Guo, Pleiss, Sun & Weinberger (2017), On calibration of modern neural networks,
    arXiv:1706.04599.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrops.models.calibration import temperature as fit_temperature
from astrops.models.tasks import CLASSIFICATION_COLUMNS, Task
from astrops.models.transforms import TargetCodec


class ClassificationTask(Task):
    """n_classes logits per parameter; the loss is the sum of the per-parameter cross-entropies.

    The classes are ordered bins of one continuous parameter, so a one-class miss is far better
    than a ten-class one. ``label_sigma`` > 0 (in classes) trains against a Gaussian-smoothed
    target over neighbouring classes instead of a one-hot one, which teaches that order (ordinal
    soft labels); 0 is the seed's plain cross-entropy. ``temperature`` (P,) divides the logits at
    prediction time (temperature scaling on the validation split, Guo et al. 2017); training uses
    the raw logits.
    """

    kind = "classification"
    table_columns = CLASSIFICATION_COLUMNS

    def __init__(
        self,
        codec: TargetCodec,
        in_features: int,
        calibrate: bool = True,
        label_sigma: float = 0.0,
    ):
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

    def probs(self, out: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, P, C) of the temperature-scaled logits."""
        return (out / self.temperature[:, None]).softmax(-1)

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return decode_probs(self.probs(out), self.codec)

    def metric_options(self) -> dict[str, Any]:
        return {"n_classes": self.n_classes, "distribution": False}

    def point_estimate(self, out: torch.Tensor) -> torch.Tensor:
        """The argmax has no gradient: the expected value under the softmax (Σ probs × class
        centres)."""
        return (self.probs(out) * self.codec.class_centres().to(out)).sum(-1)

    def fit_calibration(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``temperature`` fitted on the raw logits it will divide (no clamped log-probabilities),
        so whatever the buffer held before does not enter the fit."""
        factors = fit_temperature(out.log_softmax(-1), self.codec.to_class(y))
        self.temperature.copy_(factors.to(self.temperature.device))
        return {"temperature": factors}

    def combine(self, decs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Averaged class probabilities, decoded like one model's."""
        return decode_probs(torch.stack([d["probs"] for d in decs]).mean(0), self.codec)

    def fit_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """A temperature on the (clamped) log of the averaged probabilities."""
        return {
            "temperature": fit_temperature(
                dec["probs"].clamp_min(1e-12).log(), self.codec.to_class(y)
            )
        }

    def apply_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], factors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if "temperature" not in factors:
            return dict(dec)
        t = factors["temperature"].to(dec["probs"])[:, None]
        return decode_probs((dec["probs"].clamp_min(1e-12).log() / t).softmax(-1), self.codec)

    def ensemble_loss(self, dec: dict[str, torch.Tensor], y: torch.Tensor) -> float:
        """Cross-entropy of the averaged class probabilities, summed over parameters like the
        loss."""
        picked = torch.gather(dec["probs"], 2, self.codec.to_class(y).unsqueeze(-1)).clamp_min(
            1e-12
        )
        return float(-picked.log().mean() * self.n_params)

    def output_columns(
        self, dec: dict[str, torch.Tensor], parameters: list[str]
    ) -> dict[str, np.ndarray]:
        """The most probable class and its probability per parameter."""
        cols = super().output_columns(dec, parameters)
        for j, p in enumerate(parameters):
            cols[f"{p}_class"] = dec["class"][:, j].detach().cpu().numpy()
            cols[f"{p}_prob"] = dec["prob"][:, j].detach().cpu().numpy()
        return cols


def decode_probs(probs: torch.Tensor, codec: TargetCodec) -> dict[str, torch.Tensor]:
    """Class probabilities (B, P, C) → most probable class, its probability and its centre
    value."""
    p_max, cls = probs.max(-1)
    centres = codec.class_centres()
    value = torch.gather(centres.expand(len(cls), -1, -1), 2, cls.unsqueeze(-1)).squeeze(-1)
    return {"value": value, "class": cls, "prob": p_max, "probs": probs}
