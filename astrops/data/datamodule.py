"""LightningDataModule over a store dataset: :class:`~astrops.data.prepared.PreparedSpectra` on
the training device.

The data are tiny (thousands of spectra of ~20 numbers), so the whole dataset lives as tensors on
the training device and batches are index slices of those tensors: no DataLoader, no collate, no
per-sample Python.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from astrops.data.batches import STEPS_PER_CALL, DeviceBatches
from astrops.data.prepared import PreparedSpectra

CALIBRATION_STREAM = 0xCA1  # recalibration's extra observations of the validation spectra
CALIBRATION_PAIRS = 2000  # (θ, x) pairs recalibration aims at
MAX_OBSERVATIONS = 20  # of one validation spectrum


class SpectraDataModule(PreparedSpectra, L.LightningDataModule):
    """The prepared spectra (its arguments: :class:`PreparedSpectra`) as device-resident
    batches: ``tensors[split]`` holds ``(x, y)`` for ``train``, ``val`` and ``test`` after
    :meth:`setup`; the loaders deal shuffled (training, with fresh observation noise each epoch)
    or ordered batches of them."""

    # -- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        device = (
            self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        )
        self.rank = self.trainer.global_rank if self.trainer is not None else 0
        self.world_size = self.trainer.world_size if self.trainer is not None else 1
        self.seed = torch.initial_seed() % 2**31
        x = torch.as_tensor(np.nan_to_num(self.delta, nan=0.0), dtype=torch.float32, device=device)
        y = torch.as_tensor(self.params, dtype=torch.float32, device=device)
        self.tensors = {
            name: (x[idx], y[idx])
            for name, idx in (
                ("train", self.train_idx),
                ("val", self.val_idx),
                ("test", self.test_idx),
            )
        }

    def calibration_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` for recalibration: the validation split and, under an observation,
        ⌈2000 / n_val⌉ − 1 (at most 19) more noise realisations of each validation spectrum.

        A likelihood-fitted recalibration on a few hundred pairs learns their noise (on toy
        posteriors fitted to 199 pairs SBC fails at p ~ 10⁻⁵, to 2 000 it passes;
        docs/posteriors.md); the truths stay the validation truths, but each new observation is an
        independent draw of x | θ, which is what the fit averages over. Without an observation
        the spectra are noiseless and the validation split is used as it is."""
        x, y = self.tensors["val"]
        draws = min(MAX_OBSERVATIONS, -(-CALIBRATION_PAIRS // max(len(y), 1)))
        if self.sigma is None or draws <= 1:
            return x, y
        rng = np.random.default_rng([self.split_seed, CALIBRATION_STREAM])
        sigma = np.nan_to_num(self.sigma)
        extra = [
            self.val_clean + sigma * rng.standard_normal(self.val_clean.shape)
            for _ in range(draws - 1)
        ]
        more = torch.as_tensor(
            np.nan_to_num(np.concatenate(extra)), dtype=x.dtype, device=x.device
        )
        return torch.cat([x, more]), y.repeat(draws, 1)

    def _batches(self, split: str, train: bool) -> DeviceBatches:
        x, y = self.tensors[split]
        noise = (
            None
            if self.sigma is None
            else torch.as_tensor(np.nan_to_num(self.sigma), dtype=x.dtype, device=x.device)
        )
        return DeviceBatches(
            x,
            y,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
            noise=noise,
            **(self._grouping() if train else {}),
        )

    def _grouping(self) -> dict[str, int | None]:
        """Training batches grouped per Lightning call (:mod:`astrops.data.batches`), with an
        integer ``trainer.limit_train_batches`` applied to mini-batches as before; without a
        trainer (a loader used directly), a fractional limit or ``overfit_batches`` (which
        Lightning applies to what the loader yields), one mini-batch per item."""
        trainer = self.trainer
        limit = getattr(trainer, "limit_train_batches", None)
        if trainer is None or (
            (isinstance(limit, float) and limit < 1.0) or getattr(trainer, "overfit_batches", 0)
        ):  # no Lightning call to amortise, or a limit Lightning applies to what is yielded
            return {"group": 1, "limit": None}
        return {"group": STEPS_PER_CALL, "limit": limit if isinstance(limit, int) else None}

    def train_dataloader(self) -> DeviceBatches:
        return self._batches("train", True)

    def val_dataloader(self) -> DeviceBatches:
        return self._batches("val", False)

    def test_dataloader(self) -> DeviceBatches:
        return self._batches("test", False)
