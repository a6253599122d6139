"""Content-addressed, append-only store of simulated power spectra.

A store is a directory holding datasets. A dataset is everything that changes a spectrum except the
varied parameters and the seed (box, cosmology, flags, fixed astrophysics, redshifts, k-binning,
code versions); its identity is the hash of that specification, so incompatible spectra can never
mix. The store is deliberately ignorant of 21cmFAST and of torch: it hashes a JSON-able ``spec``
handed to it and keeps rows of numbers.

On disk (documented in docs/design.md, readable with any Parquet reader)::

    STORE/<name>-<hash12>/dataset.json          spec, parameter names, redshifts, k grid
    STORE/<name>-<hash12>/records/*.parquet     append-only record files, one writer each

Every write goes to a hidden temporary file that is renamed into place, so a reader never sees a
half-written file. Writers never modify or lock each other's files, which makes many processes or
cluster jobs on a shared file system safe; a record computed twice by racing writers is stored
twice and de-duplicated on read and on :meth:`Dataset.compact`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from astrops.errors import StoreError
from astrops.store.dataset import Dataset
from astrops.store.files import (
    RECORDS,
    SCHEMA_VERSION,
    TMP_PREFIX,
    atomic_write_bytes,
    canonical_json,
    spec_hash,
)


class Store:
    """A directory of datasets (default ``data/store``)."""

    def __init__(self, root: str | os.PathLike):
        """Refuse a dataset directory (or its records folder) given as the store, before any work.

        Otherwise ``verify`` would pass on nothing, ``info`` would list nothing and ``simulate.py``
        would nest a second dataset inside the first; every entry point opens stores here.
        """
        self.root = Path(root).expanduser().absolute()
        if (self.root / "dataset.json").is_file():
            dataset_dir, what = self.root, "a dataset directory"
        elif self.root.name == RECORDS and (self.root.parent / "dataset.json").is_file():
            dataset_dir, what = self.root.parent, "a dataset's records folder"
        else:
            return
        raise StoreError(
            f"{root} is {what}, not a store: give the store that holds it, {dataset_dir.parent} "
            "(e.g. data/reference, not data/reference/<dataset>)"
        )

    def check_writable(self) -> None:
        """Fail before any work when the store cannot be written (one line, with the fix)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"store path {self.root} is not writable ({exc.strerror or exc}): choose another "
                "with paths.store_dir=..."
            ) from exc

    def datasets(self) -> list[Dataset]:
        if not self.root.is_dir():
            return []
        return [Dataset(p.parent) for p in sorted(self.root.glob("*/dataset.json"))]

    def dataset(self, ref: str | None = None) -> Dataset:
        """A dataset by directory name, readable name or hash prefix (``None``: the only one)."""
        matches = [
            d
            for d in self.datasets()
            if ref is None or ref in (d.name, d.meta.get("name")) or d.hash.startswith(ref)
        ]
        if len(matches) != 1:
            have = ", ".join(d.name for d in self.datasets()) or "none"
            what = "no" if not matches else "more than one"
            raise StoreError(f"{what} dataset matches '{ref}' in {self.root} (datasets: {have})")
        return matches[0]

    def create_dataset(
        self, name: str, spec: dict, parameters: list[str], redshifts: list[float], k: np.ndarray
    ) -> Dataset:
        """Open the dataset for ``spec``, creating it if needed (idempotent, race-safe)."""
        h = spec_hash(spec)
        path = self.root / f"{name}-{h[:12]}"
        if not (path / "dataset.json").exists():
            (path / RECORDS).mkdir(parents=True, exist_ok=True)
            meta = {
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "hash": h,
                "spec": json.loads(canonical_json(spec)),
                "parameters": list(parameters),
                "redshifts": [float(z) for z in redshifts],
                "k": [float(x) for x in np.asarray(k)],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_bytes(path / "dataset.json", json.dumps(meta, indent=1).encode())
        ds = Dataset(path)
        if ds.hash != h:
            raise StoreError(
                f"{path} holds a dataset with hash {ds.hash[:12]}, not {h[:12]}: the store is "
                "damaged"
            )
        return ds
