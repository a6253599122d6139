"""Cached, content-addressed store of simulated spectra (knows nothing of torch or 21cmFAST)."""

from astrops.errors import StoreError
from astrops.store.dataset import Dataset
from astrops.store.files import record_key, spec_hash
from astrops.store.records import Records
from astrops.store.store import Store

__all__ = ["Dataset", "Records", "Store", "StoreError", "record_key", "spec_hash"]
