"""Identity and durability primitives of the store: hashing, keys, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

SCHEMA_VERSION = 1
RECORDS = "records"
TMP_PREFIX = ".tmp-"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the hashed form of specs and keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=float)


def spec_hash(spec: dict) -> str:
    """Dataset identity: sha256 of the canonical JSON of its specification."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def record_key(params: dict[str, float], seed: int | None) -> str:
    """Record identity inside a dataset: its parameter values (exact float repr) and IC seed."""
    payload = canonical_json({"p": {k: repr(float(v)) for k, v in params.items()}, "s": seed})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename (readers never see a partial
    file)."""
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def dedupe(table: pa.Table) -> pa.Table:
    """Keep one row per key, preferring status 'ok', then the earliest written."""
    if table.num_rows == 0:
        return table
    status_rank = pa.compute.not_equal(table["status"], "ok").cast(pa.int8())
    order = pa.compute.sort_indices(
        pa.table({"key": table["key"], "r": status_rank, "c": table["created"]}),
        sort_keys=[("key", "ascending"), ("r", "ascending"), ("c", "ascending")],
    )
    table = table.take(order)
    keys = table["key"].to_numpy(zero_copy_only=False)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return table.filter(pa.array(first))
