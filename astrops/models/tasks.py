"""Heads + losses: what the network predicts and how it is scored.

A task owns the :class:`TargetCodec` (target scaling and class edges) so its outputs can always be
decoded to physical parameter values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from astrops.models.transforms import TargetCodec


class RegressionTask(nn.Module):
    """One value per parameter, MSE on standardised targets (equal weight per parameter)."""

    kind = "regression"

    def __init__(self, codec: TargetCodec, in_features: int):
        super().__init__()
        self.codec = codec
        self.n_params = codec.mean.numel()
        self.head = nn.Linear(in_features, self.n_params)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, self.codec.encode(y))

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"value": self.codec.decode(out)}


class ClassificationTask(nn.Module):
    """n_classes logits per parameter; the loss is the sum of the per-parameter cross-entropies."""

    kind = "classification"

    def __init__(self, codec: TargetCodec, in_features: int):
        super().__init__()
        self.codec = codec
        self.n_params, self.n_classes = codec.mean.numel(), codec.n_classes
        self.head = nn.Linear(in_features, self.n_params * self.n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).view(-1, self.n_params, self.n_classes)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self.codec.to_class(y)
        return F.cross_entropy(out.reshape(-1, self.n_classes), target.reshape(-1)) * self.n_params

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        prob = out.softmax(-1)
        p_max, cls = prob.max(-1)
        centres = self.codec.class_centres()
        value = torch.gather(centres.expand(len(cls), -1, -1), 2, cls.unsqueeze(-1)).squeeze(-1)
        return {"value": value, "class": cls, "prob": p_max, "probs": prob}
