"""Cached, content-addressed store of simulated spectra (knows nothing of torch or 21cmFAST)."""

from astrops.store.store import Dataset, Records, Store, StoreError, record_key, spec_hash

__all__ = ["Dataset", "Records", "Store", "StoreError", "record_key", "spec_hash"]
