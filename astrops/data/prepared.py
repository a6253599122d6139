"""One store dataset made ready to learn from, in numpy: redshift selection, the observation,
cleaning, splits and the fitted transforms.

This is everything :class:`~astrops.data.SpectraDataModule` knows before a device is involved;
baselines, held-out scoring and the reports read these arrays directly. The fitted input transform
(kept bins, log floor, standardisation) and the target statistics are handed to the model, which
stores them as buffers in its checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from astrops.data.observation import Observation
from astrops.data.selection import (
    kept_bins,
    load_records,
    priors_and_class_edges,
    redshift_indices,
)
from astrops.data.splits import (
    SplitPlan,
    check_split_sizes,
    informative_mask,
    split_records,
)
from astrops.errors import DataConfigError
from astrops.models.novelty import NoveltyScore, fit_novelty
from astrops.models.transforms import SpectrumTransform, TargetCodec
from astrops.store import Dataset

log = logging.getLogger(__name__)
NOVELTY_STREAM = 0x00D  # the OOD score's noise draws, apart from training's and the fixed ones


class PreparedSpectra:
    """Spectra and parameters of one store dataset, split by simulation.

    The split depends only on ``split_seed`` (not on the training seed), so seed sweeps and
    ensemble members share one test set; it is stratified on the class of the first parameter (ζ),
    so regression and classification runs see identical splits. Class edges span the priors
    recorded in the dataset's design (``Records.priors``), the one place they are written down.
    Nothing is read until :meth:`prepare` (idempotent; every accessor calls it).

    Args:
        store_dir: the store holding the training dataset.
        dataset: its name or hash prefix (None: the store's only dataset).
        redshifts: the redshifts to use, each one the dataset has.
        feature_transform: ``log10``, ``asinh`` (scaled by the observation's σ) or ``raw`` Δ².
        standardize_features, standardize_targets: scale inputs / targets to zero mean, unit std.
        split_seed, test_fraction, val_fraction, kfold, fold, train_size: the split
            (:class:`~astrops.data.splits.SplitPlan`).
        batch_size, eval_batch_size: training and evaluation batch sizes.
        n_classes: classes per parameter (classification heads, stratification).
        log_floor_fraction: the log transform's floor, as a fraction of each bin's median.
        test_store_dir, test_dataset: a held-out dataset to test on instead of a split.
        extra_train_store_dir, extra_train_dataset: more simulations of the same configuration
            that are added to the training split only (validation and test stay the dataset's;
            ``train_size`` subsamples the dataset's own training part, then all extras join).
        observation: the ``observation`` config (noise tables, k-range, own k-grid), or None for
            noiseless spectra on every k-bin.
    """

    def __init__(
        self,
        store_dir: str,
        dataset: str | None = None,
        redshifts: list[float] | tuple = (8.0,),
        feature_transform: str = "log10",
        standardize_features: bool = True,
        standardize_targets: bool = True,
        split_seed: int = 0,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        eval_batch_size: int = 4096,
        n_classes: int = 25,
        kfold: int | None = None,
        fold: int = 0,
        train_size: float | None = None,
        log_floor_fraction: float | None = 1e-3,
        test_store_dir: str | None = None,
        test_dataset: str | None = None,
        observation: Mapping[str, Any] | None = None,
        extra_train_store_dir: str | None = None,
        extra_train_dataset: str | None = None,
    ):
        super().__init__()  # the next class of a subclass's MRO (LightningDataModule)
        if feature_transform not in ("raw", "log10", "asinh"):
            raise DataConfigError(
                f"data.feature_transform={feature_transform!r}: choose 'raw', 'log10' or 'asinh'"
            )
        self.plan = SplitPlan(test_fraction, val_fraction, split_seed, kfold, fold, train_size)
        if test_store_dir and kfold:
            raise DataConfigError(
                "data.kfold with data.test_store_dir: k-fold splits the training dataset into "
                "test folds; use one of them (data.kfold=null or data.test_store_dir=null)"
            )
        self.store_dir, self.dataset_ref = store_dir, dataset
        self.test_store_dir, self.test_dataset_ref = test_store_dir, test_dataset
        self.extra_store_dir, self.extra_dataset_ref = extra_train_store_dir, extra_train_dataset
        self.redshifts = [float(z) for z in redshifts]
        self.feature_transform, self.standardize_features = feature_transform, standardize_features
        self.standardize_targets, self.log_floor_fraction = standardize_targets, log_floor_fraction
        self.split_seed, self.test_fraction = split_seed, test_fraction
        self.val_fraction = val_fraction
        self.kfold, self.fold, self.train_size = kfold, fold, train_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.n_classes = n_classes
        self.observation = Observation.from_config(observation)  # None: noiseless, every bin
        self.sigma: np.ndarray | None = None  # (n_z, n_k) the observation's 1σ, NaN: unmeasured
        # filled by prepare(): None until then; rows are training records, then held-out ones
        self.dataset: Dataset | None = None  # the training dataset
        self.test_ds: Dataset | None = None  # the held-out dataset, or None: a split
        self.extra_ds: Dataset | None = None  # extra training simulations, or None
        self.n_extra = 0
        self.parameters: list[str] | None = None  # names of the params columns
        self.k: np.ndarray | None = None  # (n_k,) k-bin centres, 1/Mpc
        self.keys: np.ndarray | None = None  # (N,) record keys
        self.params: np.ndarray | None = None  # (N, n_params) physical parameter values
        # (N, n_z, n_k) Δ² at the selected redshifts, NaN in empty bins
        self.delta: np.ndarray | None = None
        self.xH: np.ndarray | None = None  # (N, n_z) neutral fraction at the selected redshifts
        self.ranges: np.ndarray | None = None  # (n_params, 2) prior [low, high] per parameter
        # (n_params, n_classes + 1) class edges spanning the priors
        self.edges: np.ndarray | None = None
        self.kept_bins: np.ndarray | None = None  # indices of the k-bins finite in every spectrum
        self.train_idx: np.ndarray | None = None
        self.val_idx: np.ndarray | None = None
        self.test_idx: np.ndarray | None = None
        self.transform: SpectrumTransform | None = None  # fitted on the training split
        self.codec: TargetCodec | None = None  # fitted on the training split
        self.novelty: NoveltyScore | None = None  # the OOD score, fitted on training + validation
        # filled by setup(): where the tensors live and how batches are dealt
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.rank, self.world_size, self.seed = 0, 1, 0
        self._prepared = False

    # -- loading, cleaning, splitting (once; idempotent) -------------------------------------
    def prepare(self) -> None:
        """Read the dataset, select redshifts, clean, split and fit the transforms (CPU, numpy)."""
        if self._prepared:
            return
        loaded = load_records(
            self.store_dir,
            self.dataset_ref,
            self.test_store_dir,
            self.test_dataset_ref,
            self.extra_store_dir,
            self.extra_dataset_ref,
        )
        self.dataset, self.test_ds, recs = loaded.dataset, loaded.test_dataset, loaded.records
        self.extra_ds, self.n_extra = loaded.extra_dataset, loaded.n_extra
        zi = redshift_indices(self.dataset, self.redshifts)
        self.parameters, self.k = self.dataset.parameters, self.dataset.k
        self.keys, self.params = recs.keys, recs.params
        self.delta, self.xH = recs.delta[:, zi, :], recs.xH[:, zi]
        # its own k-bins, if any; bins it does not measure dropped like empty ones
        if self.observation is not None:
            self.k, self.delta = self.observation.on_own_grid(
                self.k,
                self.delta,
                self.dataset.spec.get("cosmo_params"),
                f"dataset {self.dataset.name}",
            )
            self.sigma = self.observation.sigma(self.k, self.redshifts)
            self.delta = np.where(np.isfinite(self.sigma).all(axis=0), self.delta, np.nan)
        self.ranges, self.edges = priors_and_class_edges(
            loaded.priors, self.parameters, self.params, self.n_classes, self.dataset.name
        )
        self.kept_bins = kept_bins(self.delta)
        self._split(recs.seeds[: len(recs) - self.n_extra], loaded.n_own)
        # extra training simulations: after every split choice, so the splits stay the dataset's
        self.train_idx = np.concatenate(
            [self.train_idx, np.arange(len(recs) - self.n_extra, len(recs))]
        )
        self.transform = SpectrumTransform.fit(
            self.delta[self.train_idx],
            self.kept_bins,
            self.feature_transform,
            self.standardize_features,
            self.log_floor_fraction,
            self.sigma,
        )
        self.codec = TargetCodec.fit(
            self.params[self.train_idx], self.edges, self.standardize_targets
        )
        self.novelty = fit_novelty(  # on noiseless spectra: it draws its own noise
            self.delta[self.train_idx],
            self.delta[self.val_idx],
            self.kept_bins,
            self.sigma,
            self.transform,
            np.random.default_rng([self.split_seed, NOVELTY_STREAM]),
        )
        self.val_clean = self.delta[self.val_idx].copy()  # recalibration draws more observations
        if self.observation is not None:  # validation and test: one fixed observation per spectrum
            held = np.concatenate([self.val_idx, self.test_idx])
            self.delta[held] = self.observation.fixed_realisation(
                self.delta[held], self.sigma, self.split_seed
            )
        self._prepared = True
        sizes = "/".join(str(len(i)) for i in (self.train_idx, self.val_idx, self.test_idx))
        log.info(
            "dataset %s: %d spectra (%d extra training), redshifts %s, %d of %d k-bins kept; "
            "split %s (split_seed %d)",
            *(self.dataset.name, len(self.params), self.n_extra, self.redshifts),
            *(len(self.kept_bins), len(self.k), sizes, self.split_seed),
        )

    def _split(self, seeds: np.ndarray, n_own: int) -> None:
        """Train / validation / test indices (:mod:`astrops.data.splits`), stratified on ζ's
        class so regression and classification runs see identical splits."""
        strata = np.clip(
            np.searchsorted(self.edges[0], self.params[: len(seeds), 0], side="right") - 1,
            0,
            self.n_classes - 1,
        )
        held_out = self.test_ds is not None
        parts = split_records(self.plan, strata, seeds, n_own, held_out)
        self.train_idx, self.val_idx, self.test_idx = parts
        sizes = {"train": len(parts[0]), "validation": len(parts[1]), "test": len(parts[2])}
        check_split_sizes(self.plan, sizes, self.n_classes, held_out)

    # -- what a result depends on -----------------------------------------------------------
    def informative_mask(self, idx: np.ndarray) -> np.ndarray:
        """Records whose box is partly ionized (0.05 < x̄_HI < 0.95) at one or more of the selected
        redshifts.

        Fully ionized or fully neutral boxes carry almost no information on ζ and R_mfp at one
        redshift: R² on this subset says how well the model does where the spectrum can constrain
        the parameters.
        """
        self.prepare()
        return informative_mask(self.xH[idx])

    def informative_test_mask(self, minimum: int = 2) -> np.ndarray | None:
        """(n_test,) mask of the informative test spectra, or None when fewer than ``minimum`` are.

        The ``test_informative/`` metrics of every trainer and baseline use this one subset; R²
        needs two samples, so with fewer the subset is skipped (one warning) instead of failing the
        run.
        """
        self.prepare()
        keep = self.informative_mask(self.test_idx)
        if int(keep.sum()) >= minimum:
            return keep
        log.warning(
            "%d of %d test spectra are partly ionized (0.05 < x̄_HI < 0.95): fewer than %d, so "
            "no test_informative/ metrics",
            int(keep.sum()),
            len(keep),
            minimum,
        )
        return None

    @property
    def input_shape(self) -> tuple[int, int]:
        """(n_redshifts, n_kept_bins): channels and length of the model input."""
        self.prepare()
        return len(self.redshifts), len(self.kept_bins)

    def lineage(self) -> dict[str, str | int]:
        """What a result depends on, for MLflow tags and the checkpoint."""
        self.prepare()
        test_keys = ",".join(sorted(self.keys[self.test_idx]))
        return {
            "dataset_name": self.dataset.name,
            "dataset_hash": self.dataset.hash,
            "n_records": len(self.params),
            "split_seed": self.split_seed,
            "kfold": f"{self.fold}/{self.kfold}" if self.kfold else "none",
            "n_train": len(self.train_idx),
            "n_val": len(self.val_idx),
            "n_test": len(self.test_idx),
            "test_hash": hashlib.sha256(test_keys.encode()).hexdigest()[:16],
            "redshifts": str(self.redshifts),
            "test_dataset": f"{self.test_ds.name}@{self.test_ds.hash[:12]}"
            if self.test_ds is not None
            else "split",
            **(
                {"extra_train_dataset": f"{self.extra_ds.name} ({self.n_extra} spectra)"}
                if self.extra_ds is not None
                else {}
            ),
            **(
                {"observation": "none"}
                if self.observation is None
                else {
                    "observation": self.observation.name,
                    "observation_tables_hash": self.observation.metadata()["tables_hash"][:16],
                }
            ),
        }
