"""Data for training: a LightningDataModule over one store dataset, its splits and device batches.

``batches`` deals device-resident mini-batches, grouped per training call; ``selection``
reads the records and refuses what cannot be learnt from; ``splits`` holds the pure
split and batching functions; ``prepared`` composes them into the numpy arrays and fitted
transforms of one dataset; ``datamodule`` puts those on the training device as Lightning batches;
``observation`` is an instrument's noise and k-range.
``_target_: astrops.data.SpectraDataModule`` names
the module in configs.
"""

from astrops.data.batches import DeviceBatches
from astrops.data.datamodule import SpectraDataModule
from astrops.data.splits import informative_mask, stratified_folds, stratified_split
from astrops.errors import DataConfigError, ObservationError

__all__ = [
    "DataConfigError",
    "DeviceBatches",
    "ObservationError",
    "SpectraDataModule",
    "informative_mask",
    "stratified_folds",
    "stratified_split",
]
