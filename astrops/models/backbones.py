"""Feature extractors over spectra (B, n_z, n_k): the seed study's dense and 1D-CNN networks,
configurable.

Defaults reproduce the seed: dense 64 → 32 (ReLU); CNN Conv1D 64 k3 → MaxPool 2 → Conv1D 32 k3 →
MaxPool 2 → Flatten → Dense 64. Redshifts are concatenated features (dense) or channels (CNN).
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _norm(kind: str, width: int, conv: bool = False) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model norm={kind!r}: choose none, batch or layer")


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"model activation={name!r}: choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(
    in_features: int, hidden: list[int], dropout: float, norm: str, activation: str
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), _norm(norm, width), _activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers)


class DenseBackbone(nn.Module):
    """Fully connected network over the flattened (n_z × n_k) features."""

    def __init__(
        self,
        input_shape: tuple[int, int],
        hidden: list[int] = (64, 32),
        dropout: float = 0.0,
        norm: str = "none",
        activation: str = "relu",
    ):
        super().__init__()
        n_z, n_k = input_shape
        self.net = nn.Sequential(
            nn.Flatten(), mlp(n_z * n_k, list(hidden), dropout, norm, activation)
        )
        self.out_features = list(hidden)[-1] if hidden else n_z * n_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNNBackbone(nn.Module):
    """1D convolutions along k, redshifts as input channels, then a dense block."""

    def __init__(
        self,
        input_shape: tuple[int, int],
        channels: list[int] = (64, 32),
        kernel_size: int = 3,
        pool: int = 2,
        dense: list[int] = (64,),
        dropout: float = 0.0,
        norm: str = "none",
        activation: str = "relu",
        padding: str = "valid",
    ):
        super().__init__()
        # cuDNN runs float32 convolutions in TF32 by default: on an H100 the same trained CNN then
        # differed from the CPU by 1.4e-3 relative (make gpu-check). These networks are tiny, so
        # exact fp32 costs nothing.
        torch.backends.cudnn.allow_tf32 = False
        n_z, length = input_shape
        layers: list[nn.Module] = []
        in_ch = n_z
        for ch in channels:
            layers += [
                nn.Conv1d(in_ch, ch, kernel_size, padding=padding),
                _norm(norm, ch, conv=True),
                _activation(activation),
            ]
            if pool > 1:
                layers.append(nn.MaxPool1d(pool))
            in_ch = ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, n_z, length)).shape[1]
        if flat == 0:
            raise ValueError(
                f"CNN reduces {length} k-bins to nothing: use fewer/smaller layers or padding=same"
            )
        self.head = mlp(flat, list(dense), dropout, norm, activation)
        self.out_features = list(dense)[-1] if dense else flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
