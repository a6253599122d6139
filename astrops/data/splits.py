"""Splits and batches: stratified, seeded index sets and device-resident mini-batches.

Pure functions of their arguments (no dataset, no Lightning), so the split a result depends on can
be recomputed and tested on its own; ``SpectraDataModule`` composes them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class DeviceBatches:
    """Shuffled mini-batches sliced from tensors already on the device.

    Under DDP each rank takes a disjoint, equal-sized slice of every epoch's permutation.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, noise: torch.Tensor | None = None):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        # (n_z, n_k) 1σ: a fresh realisation added to every training batch (observations)
        self.noise = noise
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        # training ranks need equal step counts (DDP all-reduces every step); evaluation keeps
        # every sample
        self.per_rank = len(x) // world_size if shuffle else -(-len(x) // world_size)

    def __len__(self) -> int:
        return max(1, -(-self.per_rank // self.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
            self.epoch += 1
        else:
            order = torch.arange(n, device=self.x.device)
        if self.world_size > 1 and self.shuffle:
            order = order[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        elif self.world_size > 1:
            order = order.tensor_split(self.world_size)[self.rank]
        noise = None
        # drawn on the device, seeded per epoch like the order
        if self.noise is not None and self.shuffle:
            noise = torch.Generator(device=self.x.device).manual_seed(self.seed * 100_003 + self.epoch + 7_919)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.x[idx]
            if noise is not None:
                x = x + self.noise * torch.randn(x.shape, generator=noise, device=x.device, dtype=x.dtype)
            yield x, self.y[idx]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, taken): ``fraction`` of each stratum taken, deterministically from
    ``seed``."""
    rng = np.random.default_rng(seed)
    taken = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        taken.append(members[: int(round(fraction * len(members)))])
    taken = np.sort(np.concatenate(taken))
    rest = np.setdiff1d(np.arange(len(labels)), taken)
    return rest, taken


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint folds covering all indices, each stratum dealt round-robin after a seeded
    shuffle."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        for i, m in enumerate(members):
            folds[(offset + i) % k].append(int(m))
        offset += len(members)
    return [np.sort(np.asarray(f, dtype=int)) for f in folds]


def informative_mask(xH: np.ndarray) -> np.ndarray:
    """(N, n_z) neutral fractions → partly ionized (0.05 < x̄_HI < 0.95) at one redshift at least;
    NaN is not."""
    xH = np.asarray(xH, dtype=np.float64).reshape(len(xH), -1)
    with np.errstate(invalid="ignore"):
        return ((xH > 0.05) & (xH < 0.95)).any(axis=1)
