"""Splits: stratified, seeded index sets of training, validation and test records.

Pure functions of their arguments (no dataset, no Lightning), so the split a result depends on can
be recomputed and tested on its own; ``SpectraDataModule`` composes them. A split depends only on
:class:`SplitPlan` (``split_seed``, not the training seed), so seed sweeps and ensemble members
share one test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astrops.errors import DataConfigError


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
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


@dataclass(frozen=True)
class SplitPlan:
    """How records are split: fractions, k-fold, seed and training-set size (``data.*``)."""

    test_fraction: float = 0.2
    val_fraction: float = 0.1
    split_seed: int = 0
    kfold: int | None = None
    fold: int = 0
    train_size: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1 or not 0 < self.val_fraction < 1:
            raise DataConfigError("data.test_fraction and data.val_fraction must lie in (0, 1)")
        k, fold = self.kfold, self.fold
        if k is not None and (k < 2 or not 0 <= fold < k):
            raise DataConfigError(
                f"data.kfold={k} data.fold={fold}: need kfold >= 2 and 0 <= fold < kfold"
            )


def split_records(
    plan: SplitPlan, strata: np.ndarray, seeds: np.ndarray, n_own: int, held_out: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) record indices, stratified on ``strata`` (ζ's class).

    Spectra sharing initial conditions (``simulation.sims_per_ic > 1``) land in the same part, or
    the test set would share cosmic variance with the training set; unknown seeds (< 0) stand
    alone. With a ``held_out`` test dataset (records ``n_own:``), every record of the training
    dataset trains or validates and the other dataset is the test set.
    """
    groups = np.where(seeds >= 0, seeds, -1 - np.arange(len(seeds)))
    if not held_out:
        return split_groups(plan, strata, groups)
    train, val, _ = split_groups(plan, strata[:n_own], groups[:n_own], hold_out_test=False)
    return train, val, np.arange(n_own, len(seeds))


def split_groups(
    plan: SplitPlan, strata: np.ndarray, groups: np.ndarray, hold_out_test: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices, one group always in one part; no test part if not
    ``hold_out_test``. Groups are split stratified on their first member."""
    uniq, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    if len(uniq) == len(groups):  # every spectrum its own realisation (the default)
        return split_units(plan, strata, hold_out_test)
    parts = split_units(plan, strata[first], hold_out_test)
    return tuple(np.flatnonzero(np.isin(inverse, part)) for part in parts)


def split_units(
    plan: SplitPlan, strata: np.ndarray, hold_out_test: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of units, stratified, seeded by ``split_seed`` alone.

    ``train_size`` keeps a prefix of one fixed permutation of the training part, so smaller
    training sets are subsets of larger ones (learning curves).
    """
    if plan.kfold:
        test = stratified_folds(strata, plan.kfold, plan.split_seed)[plan.fold]
        trainval = np.setdiff1d(np.arange(len(strata)), test)
    elif not hold_out_test:  # external test dataset
        trainval, test = np.arange(len(strata)), np.arange(0)
    else:
        trainval, test = stratified_split(strata, plan.test_fraction, plan.split_seed)
    rest, val = stratified_split(strata[trainval], plan.val_fraction, plan.split_seed + 1)
    train, val = trainval[rest], trainval[val]
    if plan.train_size is not None:
        size = plan.train_size
        n = int(size) if size > 1 else int(round(size * len(train)))
        if not 0 < n <= len(train):
            raise DataConfigError(
                f"data.train_size={size}: must be in (0, {len(train)}] spectra "
                "(or a fraction in (0, 1])"
            )
        order = np.random.default_rng(plan.split_seed + 2).permutation(len(train))
        train = np.sort(train[order[:n]])
    return train, val, test


def check_split_sizes(
    plan: SplitPlan, sizes: dict[str, int], n_classes: int, held_out: bool, minimum: int = 2
) -> None:
    """Refuse a split that leaves any part below ``minimum`` spectra, before anything trains.

    R², calibration and batch statistics need at least two samples; tiny stores (``make demo``'s
    four spectra) would otherwise train and then fail inside torchmetrics with a FAILED run.
    """
    if min(sizes.values()) >= minimum:
        return
    # the fractions are rounded per ζ class, so a part is empty until each class holds a few
    # spectra
    smallest = (
        plan.val_fraction
        if held_out
        else min(plan.test_fraction, (1 - plan.test_fraction) * plan.val_fraction)
    )
    need = int(np.ceil(0.5 * n_classes / smallest))
    split = " / ".join(f"{n} {name}" for name, n in sizes.items())
    raise DataConfigError(
        f"{sum(sizes.values())} spectra split into {split}: each part needs at least {minimum} "
        f"spectra; simulate more (about {need} or more with {n_classes} classes and these "
        "fractions) or raise data.test_fraction / data.val_fraction"
    )
