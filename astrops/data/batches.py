"""Mini-batches sliced from tensors already on the training device, grouped per training call.

The spectra are tiny (thousands of ~20-number rows), so a DataLoader's collation and Lightning's
per-step bookkeeping (~0.5 ms a step on a CPU core) cost more than a small network's optimizer step
itself. Batches are therefore index slices of device tensors, and training batches come in groups:
one Lightning ``training_step`` runs every optimizer step of its group (manual optimization,
:class:`~astrops.models.estimator.ParameterEstimator`), like Keras's ``steps_per_execution``. The
order, the noise draws and the number of optimizer steps are exactly those of ungrouped batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

# optimizer steps per training call: enough to hide Lightning's per-call cost, few enough that
# the progress bar still moves within an epoch
STEPS_PER_CALL = 64

Batch = tuple[torch.Tensor, torch.Tensor]


class DeviceBatches:
    """Shuffled (training) or ordered (evaluation) mini-batches of device tensors.

    Under DDP each rank takes a disjoint, equal-sized slice of every epoch's permutation.

    Args:
        x, y: inputs and targets, already on the device.
        batch_size: rows per mini-batch.
        shuffle: a new seeded permutation each epoch (training), else the stored order.
        seed: the permutations' and noise draws' seed (per epoch: ``seed * 100_003 + epoch``).
        rank, world_size: this process's share under DDP.
        noise: (n_z, n_k) 1σ: a fresh realisation added to every training mini-batch.
        group: mini-batches yielded together as one list (training only; 1: one tuple each).
        limit: at most this many mini-batches per epoch (``trainer.limit_train_batches`` as an
            int, which Lightning would otherwise apply to groups).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        noise: torch.Tensor | None = None,
        group: int = 1,
        limit: int | None = None,
    ):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.noise = noise
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self.group, self.limit = max(1, int(group)) if shuffle else 1, limit
        # training ranks need equal step counts (DDP all-reduces every step); evaluation keeps
        # every sample
        self.per_rank = len(x) // world_size if shuffle else -(-len(x) // world_size)

    def n_batches(self) -> int:
        """Mini-batches (optimizer steps, when training) per epoch."""
        n = max(1, -(-self.per_rank // self.batch_size))
        return min(n, self.limit) if self.limit else n

    def __len__(self) -> int:
        return -(-self.n_batches() // self.group)

    def __iter__(self) -> Iterator[Batch | list[Batch]]:
        if self.group == 1:
            yield from self.batches()
            return
        pending: list[Batch] = []
        for batch in self.batches():
            pending.append(batch)
            if len(pending) == self.group:
                yield pending
                pending = []
        if pending:
            yield pending

    def batches(self) -> Iterator[Batch]:
        """This epoch's mini-batches one by one (advances the epoch when shuffling)."""
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
            self.epoch += 1
        else:
            order = torch.arange(n, device=self.x.device)
        if self.world_size > 1 and self.shuffle:
            order = order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
        elif self.world_size > 1:
            order = order.tensor_split(self.world_size)[self.rank]
        noise = None
        # drawn on the device, seeded per epoch like the order
        if self.noise is not None and self.shuffle:
            noise = torch.Generator(device=self.x.device).manual_seed(
                self.seed * 100_003 + self.epoch + 7_919
            )
        for start in range(0, len(order), self.batch_size)[: self.n_batches()]:
            idx = order[start : start + self.batch_size]
            x = self.x[idx]
            if noise is not None:
                x = x + self.noise * torch.randn(
                    x.shape, generator=noise, device=x.device, dtype=x.dtype
                )
            yield x, self.y[idx]
