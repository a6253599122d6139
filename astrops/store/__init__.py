"""Cached, content-addressed store of simulated spectra (knows nothing of torch or 21cmFAST)."""

from astrops.store.dataset import Dataset, Records
from astrops.store.files import StoreError, record_key, spec_hash
from astrops.store.store import Store

__all__ = ["Dataset", "Records", "Store", "StoreError", "record_key", "spec_hash"]
