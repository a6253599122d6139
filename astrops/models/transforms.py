"""Input and target transforms that travel with the model (buffers in its state_dict).

Keeping them inside the model means a checkpoint alone maps raw 21CMMC spectra to physical
parameters: no side files, and ``torch.load(weights_only=True)`` suffices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SpectrumTransform(nn.Module):
    """Raw Δ² (B, n_z, n_k) in mK² → model features (B, n_z, n_kept).

    Steps: keep the k-bins that are finite in the data; map each bin (``kind``); standardise each
    (z, k) feature with training-split statistics. ``kind``:

    - ``raw``: Δ² itself (the seed study's).
    - ``log10``: clip each bin at a floor and take log10. Fully ionized boxes have Δ² = 0 exactly,
      and nearly ionized ones tiny values (down to 1e-7 mK² in the reference data) that carry no
      usable signal. Per (z, k) the floor is ``floor_fraction`` (default 1e-3) times the median
      training Δ²: 30 dB below typical power. All (nearly) ionized spectra then share one finite
      value just below the informative range, instead of a -inf or a long tail that would dominate
      the standardisation. ``floor_fraction=None`` uses the smallest positive training value
      instead. A noisy observation's negative Δ² is clipped too, which throws information away:
      hence ``asinh``.
    - ``asinh``: asinh(Δ² / s), logarithmic for |Δ²| ≫ s and linear (sign kept) for |Δ²| ≲ s, so a
      noise-subtracted measurement that scatters around zero stays informative (the "asinh
      magnitudes" of Lupton, Gunn & Szalay 1999, AJ 118, 1406). The scale ``s`` per (z, k) is the
      observation's 1σ thermal noise where one is given (the natural unit of a measured band
      power), else the log floor.

    The ``floor`` buffer holds the log floor or the asinh scale.
    """

    def __init__(self, n_z: int, n_k: int, kept_bins: np.ndarray | list[int], kind: str = "log10"):
        super().__init__()
        n_kept = len(kept_bins)
        self.register_buffer("log10", torch.tensor(kind == "log10"))
        self.register_buffer("asinh", torch.tensor(kind == "asinh"))
        self.register_buffer("kept_bins", torch.as_tensor(np.asarray(kept_bins), dtype=torch.long))
        self.register_buffer("floor", torch.zeros(n_z, n_kept))
        self.register_buffer("mean", torch.zeros(n_z, n_kept))
        self.register_buffer("std", torch.ones(n_z, n_kept))
        self.n_z, self.n_k = n_z, n_k

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before asinh existed
        state_dict.setdefault(prefix + "asinh", torch.tensor(False))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def fit(
        cls,
        delta_train: np.ndarray,
        kept_bins: np.ndarray,
        kind: str,
        standardize: bool,
        floor_fraction: float | None = 1e-3,
        noise_sigma: np.ndarray | None = None,
    ) -> SpectrumTransform:
        """Fit on the training split's Δ² (N, n_z, n_k); ``noise_sigma`` (n_z, n_k): the
        observation's 1σ."""
        t = cls(delta_train.shape[1], delta_train.shape[2], kept_bins, kind)
        d = delta_train[:, :, kept_bins]
        if t.log10 or t.asinh:
            smallest = np.where(d > 0, d, np.inf).min(axis=0)
            floor = (
                smallest
                if floor_fraction is None
                else np.maximum(floor_fraction * np.median(d, axis=0), smallest)
            )
            if t.asinh and noise_sigma is not None:
                floor = np.asarray(noise_sigma, dtype=np.float64)[:, kept_bins]
            t.floor.copy_(torch.as_tensor(np.where(np.isfinite(floor) & (floor > 0), floor, 1e-6)))
        with torch.no_grad():
            feats = t.features(torch.as_tensor(d, dtype=torch.float32), standardize=False).numpy()
        if standardize:
            t.mean.copy_(torch.as_tensor(feats.mean(axis=0)))
            t.std.copy_(
                torch.as_tensor(
                    np.maximum(feats.std(axis=0), 1e-6 * (np.abs(feats).max(axis=0) + 1e-12))
                )
            )
        return t

    def features(self, kept: torch.Tensor, standardize: bool = True) -> torch.Tensor:
        if self.log10:
            x = torch.log10(torch.maximum(kept, self.floor))
        elif self.asinh:
            x = torch.asinh(kept / self.floor)
        else:
            x = kept
        return (x - self.mean) / self.std if standardize else x

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.features(delta.index_select(-1, self.kept_bins))


class TargetCodec(nn.Module):
    """Physical parameters ↔ what the heads predict (standardised values, or class indices).

    ``edges`` (n_params, n_classes + 1) cut each prior range into equal classes (the seed study's
    25); they are stored with the model so class indices always map back to the same parameter
    values.
    """

    def __init__(self, n_params: int, n_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_params))
        self.register_buffer("std", torch.ones(n_params))
        self.register_buffer("edges", torch.zeros(n_params, n_classes + 1))

    @classmethod
    def fit(cls, params_train: np.ndarray, edges: np.ndarray, standardize: bool) -> TargetCodec:
        c = cls(params_train.shape[1], edges.shape[1] - 1)
        c.edges.copy_(torch.as_tensor(edges))
        if standardize:
            c.mean.copy_(torch.as_tensor(params_train.mean(axis=0)))
            c.std.copy_(torch.as_tensor(params_train.std(axis=0)))
        return c

    @property
    def n_classes(self) -> int:
        return self.edges.shape[1] - 1

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def to_class(self, y: torch.Tensor) -> torch.Tensor:
        """Class index per parameter; the upper prior edge belongs to the last class."""
        inner = self.edges[:, 1:-1].contiguous()
        return torch.stack(
            [
                torch.bucketize(y[:, j].contiguous(), inner[j], right=True)
                for j in range(y.shape[1])
            ],
            dim=1,
        )

    def class_centres(self) -> torch.Tensor:
        return 0.5 * (self.edges[:, 1:] + self.edges[:, :-1])
