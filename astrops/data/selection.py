"""What a data module reads and keeps: the training records (and a held-out dataset's), the
selected redshifts, the priors and class edges, and the k-bins every spectrum measures.

Functions of their arguments that refuse, in one line naming the fix, data a model cannot be
trained on: a dataset without spectra, a held-out set simulated differently or sharing initial
conditions, a redshift the dataset lacks, a record outside the recorded priors, mixed binnings.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from astrops.errors import DataConfigError, StoreError
from astrops.store import Dataset, Records, Store


class Loaded(NamedTuple):
    """The training dataset's records, then the held-out dataset's (if any), then the extra
    training dataset's (if any)."""

    dataset: Dataset
    test_dataset: Dataset | None
    records: Records
    n_own: int  # how many of ``records`` are the training dataset's
    priors: dict[str, list[float]]  # the training design's (a held-out set never widens them)
    extra_dataset: Dataset | None = None
    n_extra: int = 0  # the last ``n_extra`` records only ever train


def load_records(
    store_dir: str,
    dataset_ref: str | None,
    test_store_dir: str | None = None,
    test_dataset_ref: str | None = None,
    extra_store_dir: str | None = None,
    extra_dataset_ref: str | None = None,
) -> Loaded:
    """The training dataset's records and priors, followed by a held-out dataset's records and
    an extra training dataset's (more simulations of the same configuration, e.g. for the
    reference's emulator, that never enter validation or test)."""
    ds = Store(store_dir).dataset(dataset_ref)
    recs = ds.load()
    if len(recs) == 0:
        raise DataConfigError(
            f"dataset {ds.name} in {store_dir} has no spectra: run simulate.py first"
        )
    n_own = len(recs)
    try:
        priors = recs.priors(ds.parameters)
    except StoreError as exc:
        raise DataConfigError(f"dataset {ds.name}: {exc}") from None
    test = extra = None
    if test_store_dir:
        test, test_recs = load_other_dataset(
            ds, recs, test_store_dir, test_dataset_ref, "data.test_store_dir"
        )
        recs = recs.concat(test_recs)
    n_extra = 0
    if extra_store_dir:
        extra, extra_recs = load_other_dataset(
            ds, recs, extra_store_dir, extra_dataset_ref, "data.extra_train_store_dir"
        )
        recs, n_extra = recs.concat(extra_recs), len(extra_recs)
    return Loaded(ds, test, recs, n_own, priors, extra, n_extra)


def load_other_dataset(
    ds: Dataset, recs: Records, store_dir: str, dataset_ref: str | None, key: str
) -> tuple[Dataset, Records]:
    """(dataset, records) of another dataset (``key`` names its config entry): same simulation
    configuration as ``ds``, no initial conditions shared with ``recs`` (a test set would not
    be unseen; extra training spectra would duplicate held-out cosmic variance)."""
    try:
        other = Store(store_dir).dataset(dataset_ref)
    except StoreError as exc:
        raise DataConfigError(f"{key}: {exc}") from exc
    if other.hash != ds.hash:
        raise DataConfigError(
            f"{key}: dataset {other.name} was simulated with another configuration than "
            f"{ds.name} (hash {other.hash[:12]} vs {ds.hash[:12]}): simulate it with the "
            "training dataset's simulation config and a different base seed"
        )
    other_recs = other.load()
    if len(other_recs) == 0:
        raise DataConfigError(f"{key}: dataset {other.name} in {store_dir} has no spectra")
    shared = np.intersect1d(recs.seeds[recs.seeds >= 0], other_recs.seeds[other_recs.seeds >= 0])
    if len(shared):
        raise DataConfigError(
            f"{key}: dataset {other.name} shares {len(shared)} initial-condition seeds with "
            f"the datasets already loaded ({ds.name}): simulate it with a base seed they do not "
            "use"
        )
    return other, other_recs


def redshift_indices(ds: Dataset, redshifts: list[float]) -> list[int]:
    """Positions of ``redshifts`` in the dataset's redshifts (refused if one is missing)."""
    available = ds.redshifts
    missing = [z for z in redshifts if not np.isclose(available, z).any()]
    if missing:
        raise DataConfigError(
            f"data.redshifts {missing} not in dataset {ds.name} (it has {available})"
        )
    return [int(np.flatnonzero(np.isclose(available, z))[0]) for z in redshifts]


def priors_and_class_edges(
    priors: dict[str, list[float]],
    parameters: list[str],
    params: np.ndarray,
    n_classes: int,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_params, 2) priors of the training records' design and (n_params, n_classes + 1) class
    edges spanning them.

    A record outside them (a held-out record too) would fall outside every class and the
    prediction box, so it is refused.
    """
    ranges = np.array([priors[p] for p in parameters], dtype=np.float64)
    outside = (params < ranges[:, 0]) | (params > ranges[:, 1])
    if outside.any():
        bad = [parameters[j] for j in np.unique(np.nonzero(outside)[1])]
        raise DataConfigError(
            f"{outside.any(axis=1).sum()} records have {bad} outside the priors {priors} "
            f"recorded in the design of {name}: simulate held-out data within the training "
            "priors, or import such spectra with a simulation config whose priors cover them "
            "(python -m astrops store import --config)"
        )
    return ranges, np.stack([np.linspace(lo, hi, n_classes + 1) for lo, hi in ranges])


def kept_bins(delta: np.ndarray) -> np.ndarray:
    """Indices of the k-bins finite in every spectrum (N, n_z, n_k) at every selected redshift:
    the feature grid."""
    finite = np.isfinite(delta)
    keep = finite.all(axis=0)  # (n_z, n_k)
    inconsistent = finite.any(axis=0) & ~keep
    if inconsistent.any():
        raise DataConfigError(
            f"k-bins {np.argwhere(inconsistent).tolist()} are finite in some spectra and not in "
            "others: the dataset mixes binnings; run `python -m astrops store verify`"
        )
    if not (keep == keep[0]).all():
        raise DataConfigError(
            "non-finite k-bins differ between redshifts: cannot build one feature grid"
        )
    if not keep[0].any():
        raise DataConfigError(
            "no k-bin is finite in every spectrum (or measured by the observation): widen "
            "observation.min_k/max_k or check the dataset"
        )
    return np.flatnonzero(keep[0])
