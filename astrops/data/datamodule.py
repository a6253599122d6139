"""LightningDataModule over a store dataset: redshift selection, cleaning, splits, scaling
statistics.

The data are tiny (thousands of spectra of ~20 numbers), so the whole dataset lives as tensors on
the training device and batches are index slices of those tensors: no DataLoader, no collate, no
per-sample Python. The fitted input transform (kept bins, log floor, standardisation) and the
target statistics are handed to the model, which stores them as buffers in its checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

from astrops.data.observation import Observation
from astrops.data.splits import DeviceBatches, informative_mask, stratified_folds, stratified_split
from astrops.models.transforms import SpectrumTransform, TargetCodec
from astrops.store import Dataset, Records, Store, StoreError

log = logging.getLogger(__name__)


class DataConfigError(ValueError):
    """A data configuration that cannot work with the dataset (one line, names the fix)."""


class SpectraDataModule(L.LightningDataModule):
    """Spectra and parameters of one store dataset, split by simulation.

    The split depends only on ``split_seed`` (not on the training seed), so seed sweeps and
    ensemble members share one test set; it is stratified on the class of the first parameter (ζ),
    so regression and classification runs see identical splits. Class edges span the priors
    recorded in the dataset's design (``Records.priors``), the one place they are written down.
    """

    def __init__(self, store_dir: str, dataset: str | None = None, redshifts: list[float] | tuple = (8.0,),
                 feature_transform: str = "log10", standardize_features: bool = True,
                 standardize_targets: bool = True, split_seed: int = 0, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, batch_size: int = 32, eval_batch_size: int = 4096,
                 n_classes: int = 25, kfold: int | None = None, fold: int = 0, train_size: float | None = None,
                 log_floor_fraction: float | None = 1e-3, test_store_dir: str | None = None,
                 test_dataset: str | None = None, observation: Mapping[str, Any] | None = None):
        super().__init__()
        if feature_transform not in ("raw", "log10", "asinh"):
            raise DataConfigError(f"data.feature_transform={feature_transform!r}: choose 'raw', "
                                  "'log10' or 'asinh'")
        if not 0 < test_fraction < 1 or not 0 < val_fraction < 1:
            raise DataConfigError("data.test_fraction and data.val_fraction must lie in (0, 1)")
        if kfold is not None and (kfold < 2 or not 0 <= fold < kfold):
            raise DataConfigError(f"data.kfold={kfold} data.fold={fold}: need kfold >= 2 and 0 <= "
                                  "fold < kfold")
        if test_store_dir and kfold:
            raise DataConfigError("data.kfold with data.test_store_dir: k-fold splits the "
                                  "training dataset into test "
                                  "folds; use one of them (data.kfold=null or "
                                  "data.test_store_dir=null)")
        self.store_dir, self.dataset_ref = store_dir, dataset
        self.test_store_dir, self.test_dataset_ref = test_store_dir, test_dataset
        self.redshifts = [float(z) for z in redshifts]
        self.feature_transform, self.standardize_features = feature_transform, standardize_features
        self.standardize_targets, self.log_floor_fraction = standardize_targets, log_floor_fraction
        self.split_seed, self.test_fraction, self.val_fraction = split_seed, test_fraction, val_fraction
        self.kfold, self.fold, self.train_size = kfold, fold, train_size
        self.batch_size, self.eval_batch_size, self.n_classes = batch_size, eval_batch_size, n_classes
        # None: noiseless spectra, every k-bin
        self.observation = Observation.from_config(observation)
        # (n_z, n_k) the observation's 1σ, NaN where not measured
        self.sigma: np.ndarray | None = None
        # filled by prepare(): None until then; rows are training records, then held-out ones
        self.dataset: Dataset | None = None  # the training dataset
        # the held-out dataset (data.test_store_dir), or None: a split
        self.test_ds: Dataset | None = None
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
        # filled by setup(): where the tensors live and how batches are dealt
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.rank, self.world_size, self.seed = 0, 1, 0
        self._prepared = False

    # -- loading, cleaning, splitting (once; idempotent) -------------------------------------
    def prepare(self) -> None:
        """Read the dataset, select redshifts, clean, split and fit the transforms (CPU, numpy)."""
        if self._prepared:
            return
        recs, n_own, priors = self._load_records()
        zi = self._redshift_indices()
        self.parameters, self.k = self.dataset.parameters, self.dataset.k
        self.keys, self.params = recs.keys, recs.params
        self.delta, self.xH = recs.delta[:, zi, :], recs.xH[:, zi]
        # its own k-bins, if any; bins it does not measure dropped like empty ones
        if self.observation is not None:
            self.k, self.delta = self.observation.on_own_grid(self.k, self.delta, self.dataset.spec.get("cosmo_params"),
                                                              f"dataset {self.dataset.name}")
            self.sigma = self.observation.sigma(self.k, self.redshifts)
            self.delta = np.where(np.isfinite(self.sigma).all(axis=0), self.delta, np.nan)
        self.ranges, self.edges = self._priors_and_class_edges(priors)
        self.kept_bins = self._kept_bins(self.delta)
        self.train_idx, self.val_idx, self.test_idx = self._split_records(recs.seeds, n_own)
        self._check_split_sizes()
        if self.observation is not None:  # validation and test: one fixed observation per spectrum
            held = np.concatenate([self.val_idx, self.test_idx])
            self.delta[held] = self.observation.fixed_realisation(self.delta[held], self.sigma, self.split_seed)
        self.transform = SpectrumTransform.fit(self.delta[self.train_idx], self.kept_bins, self.feature_transform,
                                               self.standardize_features, self.log_floor_fraction, self.sigma)
        self.codec = TargetCodec.fit(self.params[self.train_idx], self.edges, self.standardize_targets)
        self._prepared = True
        log.info("dataset %s: %d spectra, redshifts %s, %d of %d k-bins kept; split %d/%d/%d "
                 "(split_seed %d)",
                 self.dataset.name, len(self.params), self.redshifts, len(self.kept_bins), len(self.k),
                 len(self.train_idx), len(self.val_idx), len(self.test_idx), self.split_seed)

    def _load_records(self) -> tuple[Records, int, dict[str, list[float]]]:
        """(records of the training dataset then of the held-out one, how many are training
        records, the training dataset's priors — the held-out set's own declarations never widen
        them)."""
        self.dataset = ds = Store(self.store_dir).dataset(self.dataset_ref)
        recs = ds.load()
        if len(recs) == 0:
            raise DataConfigError(f"dataset {ds.name} in {self.store_dir} has no spectra: run "
                                  "simulate.py first")
        n_own = len(recs)
        try:
            priors = recs.priors(ds.parameters)
        except StoreError as exc:
            raise DataConfigError(f"dataset {ds.name}: {exc}") from None
        if self.test_store_dir:
            self.test_ds, test_recs = self._load_test_dataset(ds, recs)
            recs = recs.concat(test_recs)
        return recs, n_own, priors

    def _redshift_indices(self) -> list[int]:
        """Positions of ``data.redshifts`` in the dataset's redshifts (refused if one is
        missing)."""
        available = self.dataset.redshifts
        missing = [z for z in self.redshifts if not np.isclose(available, z).any()]
        if missing:
            raise DataConfigError(f"data.redshifts {missing} not in dataset {self.dataset.name} "
                                  f"(it has {available})")
        return [int(np.flatnonzero(np.isclose(available, z))[0]) for z in self.redshifts]

    def _priors_and_class_edges(self, priors: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
        """(n_params, 2) priors of the training records' design and (n_params, n_classes + 1) class
        edges.

        A record outside them (a held-out record too) would fall outside every class and the
        prediction box.
        """
        ranges = np.array([priors[p] for p in self.parameters], dtype=np.float64)
        outside = (self.params < ranges[:, 0]) | (self.params > ranges[:, 1])
        if outside.any():
            bad = [self.parameters[j] for j in np.unique(np.nonzero(outside)[1])]
            raise DataConfigError(f"{outside.any(axis=1).sum()} records have {bad} outside the "
                                  f"priors {priors} "
                                  f"recorded in the design of {self.dataset.name}: simulate "
                                  "held-out data within the "
                                  "training priors, or import such spectra with a simulation "
                                  "config whose priors "
                                  "cover them (python -m astrops.store import --config)")
        return ranges, np.stack([np.linspace(lo, hi, self.n_classes + 1) for lo, hi in ranges])

    @staticmethod
    def _kept_bins(delta: np.ndarray) -> np.ndarray:
        """Indices of the k-bins finite in every spectrum at every selected redshift (the feature
        grid)."""
        finite = np.isfinite(delta)
        keep = finite.all(axis=0)  # (n_z, n_k)
        inconsistent = finite.any(axis=0) & ~keep
        if inconsistent.any():
            raise DataConfigError(f"k-bins {np.argwhere(inconsistent).tolist()} are finite in "
                                  "some spectra and not in others: "
                                  "the dataset mixes binnings; run `python -m astrops.store "
                                  "verify`")
        if not (keep == keep[0]).all():
            raise DataConfigError("non-finite k-bins differ between redshifts: cannot build one "
                                  "feature grid")
        if not keep[0].any():
            raise DataConfigError("no k-bin is finite in every spectrum (or measured by the "
                                  "observation): widen "
                                  "observation.min_k/max_k or check the dataset")
        return np.flatnonzero(keep[0])

    def _split_records(self, seeds: np.ndarray, n_own: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) record indices, stratified on ζ's class; a held-out dataset is the
        whole test set."""
        strata = np.clip(np.searchsorted(self.edges[0], self.params[:, 0], side="right") - 1, 0, self.n_classes - 1)
        # spectra sharing initial conditions (simulation.sims_per_ic > 1) must land in the same
        # split, or the test set would share cosmic variance with the training set; unknown seeds
        # stand alone
        groups = np.where(seeds >= 0, seeds, -1 - np.arange(len(seeds)))
        if self.test_ds is None:
            return self._split(strata, groups)
        # every record of the training dataset trains or validates; the other dataset is the test
        # set
        train, val, _ = self._split(strata[:n_own], groups[:n_own], hold_out_test=False)
        return train, val, np.arange(n_own, len(seeds))

    def _check_split_sizes(self, minimum: int = 2) -> None:
        """Refuse a split that leaves any part below ``minimum`` spectra, before anything trains.

        R², calibration and batch statistics need at least two samples; tiny stores (``make
        demo``'s four spectra) would otherwise train and then fail inside torchmetrics with a
        FAILED run.
        """
        sizes = {"train": len(self.train_idx), "validation": len(self.val_idx), "test": len(self.test_idx)}
        if min(sizes.values()) >= minimum:
            return
        # the fractions are rounded per ζ class, so a part is empty until each class holds a few
        # spectra
        smallest = (self.val_fraction if self.test_ds is not None
                    else min(self.test_fraction, (1 - self.test_fraction) * self.val_fraction))
        need = int(np.ceil(0.5 * self.n_classes / smallest))
        split = " / ".join(f"{n} {name}" for name, n in sizes.items())
        raise DataConfigError(f"{len(self.params)} spectra split into {split}: each part needs at "
                              f"least {minimum} "
                              f"spectra; simulate more (about {need} or more with "
                              f"{self.n_classes} classes and these "
                              "fractions) or raise data.test_fraction / data.val_fraction")

    def _split(self, strata: np.ndarray, groups: np.ndarray,
               hold_out_test: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) record indices, one IC group always in one part; no test part if not
        ``hold_out_test``."""
        uniq, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        if len(uniq) == len(groups):  # every spectrum its own realisation (the default)
            return self._split_units(strata, hold_out_test)
        # split the groups, stratified on their first member
        parts = self._split_units(strata[first], hold_out_test)
        return tuple(np.flatnonzero(np.isin(inverse, part)) for part in parts)

    def _split_units(self, strata: np.ndarray, hold_out_test: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices of units: stratified on ζ's class, seeded by split_seed
        alone."""
        if self.kfold:
            folds = stratified_folds(strata, self.kfold, self.split_seed)
            test = folds[self.fold]
            trainval = np.setdiff1d(np.arange(len(strata)), test)
        elif not hold_out_test:  # external test dataset
            trainval, test = np.arange(len(strata)), np.arange(0)
        else:
            trainval, test = stratified_split(strata, self.test_fraction, self.split_seed)
        rest, val = stratified_split(strata[trainval], self.val_fraction, self.split_seed + 1)
        train, val = trainval[rest], trainval[val]
        if self.train_size is not None:
            n = int(self.train_size) if self.train_size > 1 else int(round(self.train_size * len(train)))
            if not 0 < n <= len(train):
                raise DataConfigError(f"data.train_size={self.train_size}: must be in (0, "
                                      f"{len(train)}] spectra "
                                      "(or a fraction in (0, 1])")
            # a prefix of one fixed permutation: smaller training sets are subsets of larger ones
            train = np.sort(train[np.random.default_rng(self.split_seed + 2).permutation(len(train))[:n]])
        return train, val, test

    def _load_test_dataset(self, ds: Dataset, recs: Records) -> tuple[Dataset, Records]:
        """(dataset, records) held out: same simulation configuration, no initial conditions shared
        with training."""
        try:
            test = Store(self.test_store_dir).dataset(self.test_dataset_ref)
        except StoreError as exc:
            raise DataConfigError(f"data.test_store_dir: {exc}") from exc
        if test.hash != ds.hash:
            raise DataConfigError(f"test dataset {test.name} was simulated with another "
                                  f"configuration than {ds.name} "
                                  f"(hash {test.hash[:12]} vs {ds.hash[:12]}): simulate the "
                                  "held-out set with the "
                                  "training dataset's simulation config and a different base seed")
        test_recs = test.load()
        if len(test_recs) == 0:
            raise DataConfigError(f"test dataset {test.name} in {self.test_store_dir} has no "
                                  "spectra")
        shared = np.intersect1d(recs.seeds[recs.seeds >= 0], test_recs.seeds[test_recs.seeds >= 0])
        if len(shared):
            raise DataConfigError(f"test dataset {test.name} shares {len(shared)} "
                                  f"initial-condition seeds with {ds.name}: "
                                  "not unseen data; simulate it with a base seed the training "
                                  "data do not use")
        return test, test_recs

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
        log.warning("%d of %d test spectra are partly ionized (0.05 < x̄_HI < 0.95): fewer than "
                    "%d, so no "
                    "test_informative/ metrics", int(keep.sum()), len(keep), minimum)
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
        return {"dataset_name": self.dataset.name, "dataset_hash": self.dataset.hash, "n_records": len(self.params),
                "split_seed": self.split_seed, "kfold": f"{self.fold}/{self.kfold}" if self.kfold else "none",
                "n_train": len(self.train_idx), "n_val": len(self.val_idx),
                "n_test": len(self.test_idx), "test_hash": hashlib.sha256(test_keys.encode()).hexdigest()[:16],
                "redshifts": str(self.redshifts),
                "test_dataset": f"{self.test_ds.name}@{self.test_ds.hash[:12]}" if self.test_ds is not None else "split",
                **({"observation": "none"} if self.observation is None else
                   {"observation": self.observation.name,
                    "observation_tables_hash": self.observation.metadata()["tables_hash"][:16]})}

    # -- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.rank = self.trainer.global_rank if self.trainer is not None else 0
        self.world_size = self.trainer.world_size if self.trainer is not None else 1
        self.seed = torch.initial_seed() % 2**31
        x = torch.as_tensor(np.nan_to_num(self.delta, nan=0.0), dtype=torch.float32, device=device)
        y = torch.as_tensor(self.params, dtype=torch.float32, device=device)
        self.tensors = {name: (x[idx], y[idx]) for name, idx in
                        (("train", self.train_idx), ("val", self.val_idx), ("test", self.test_idx))}

    def _batches(self, split: str, train: bool) -> DeviceBatches:
        x, y = self.tensors[split]
        noise = None if self.sigma is None else torch.as_tensor(np.nan_to_num(self.sigma), dtype=x.dtype,
                                                                 device=x.device)
        return DeviceBatches(x, y, self.batch_size if train else self.eval_batch_size, shuffle=train, seed=self.seed,
                             rank=self.rank, world_size=self.world_size, noise=noise)

    def train_dataloader(self) -> DeviceBatches:
        return self._batches("train", True)

    def val_dataloader(self) -> DeviceBatches:
        return self._batches("val", False)

    def test_dataloader(self) -> DeviceBatches:
        return self._batches("test", False)
