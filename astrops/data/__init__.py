"""Data for training: a LightningDataModule over one store dataset, its splits and device batches.

``datamodule`` reads, cleans and splits a dataset and fits the transforms; ``splits`` holds the
pure split and batching functions it composes. ``_target_: astrops.data.SpectraDataModule`` names
the module in configs.
"""

from astrops.data.datamodule import DataConfigError, SpectraDataModule
from astrops.data.observation import ObservationError
from astrops.data.splits import DeviceBatches, informative_mask, stratified_folds, stratified_split

__all__ = ["DataConfigError", "DeviceBatches", "ObservationError", "SpectraDataModule", "informative_mask",
           "stratified_folds", "stratified_split"]
