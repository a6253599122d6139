"""One dataset: metadata plus append-only Parquet record files (see docs/design.md)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from astrops.errors import StoreError
from astrops.store.files import (
    RECORDS,
    TMP_PREFIX,
    atomic_write_bytes,
    canonical_json,
    dedupe,
    record_key,
)
from astrops.store.records import Records, list_column

META_KEYS = frozenset({"hash", "spec", "parameters", "redshifts", "k"})


class Dataset:
    """One dataset directory: metadata plus append-only Parquet record files."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_file = self.path / "dataset.json"
        if not meta_file.exists():
            raise StoreError(f"{self.path} is not an astrops dataset (no dataset.json)")
        try:
            self.meta: dict = json.loads(meta_file.read_bytes())
            missing = sorted(META_KEYS - set(self.meta)) if isinstance(self.meta, dict) else None
            why = (
                "not a JSON object"
                if missing is None
                else f"keys {missing} missing"
                if missing
                else ""
            )
        # JSONDecodeError and UnicodeDecodeError are ValueErrors
        except (ValueError, OSError) as exc:
            why = f"unreadable: {getattr(exc, 'strerror', None) or exc}"
        if why:
            raise StoreError(
                f"{meta_file} is damaged ({why}): restore it from a backup or a copy of the "
                "store; "
                f"python -m astrops store verify {self.path.parent} lists every damaged file"
            )

    # -- metadata ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    @property
    def spec(self) -> dict:
        return self.meta["spec"]

    @property
    def parameters(self) -> list[str]:
        return list(self.meta["parameters"])

    @property
    def redshifts(self) -> list[float]:
        return [float(z) for z in self.meta["redshifts"]]

    @property
    def k(self) -> np.ndarray:
        return np.asarray(self.meta["k"], dtype=np.float64)

    # -- writing ----------------------------------------------------------------------------
    def append(self, rows: list[dict]) -> Path:
        """Durably add records (dicts as produced by a simulator or an import) in one new file."""
        if not rows:
            raise ValueError("append() needs at least one record")
        n_z, n_k = len(self.redshifts), len(self.k)
        cols: dict[str, list] = {c: [] for c in self._columns()}
        for row in rows:
            delta = np.asarray(row.get("delta", np.full((n_z, n_k), np.nan)), dtype=np.float64)
            if delta.shape != (n_z, n_k):
                raise StoreError(
                    f"record delta has shape {delta.shape}, dataset {self.name} needs ({n_z}, "
                    f"{n_k})"
                )
            params = {p: float(row["params"][p]) for p in self.parameters}
            seed = row.get("seed")
            cols["key"].append(record_key(params, seed))
            for p in self.parameters:
                cols[p].append(params[p])
            cols["seed"].append(None if seed is None else int(seed))
            cols["delta"].append(delta.ravel())
            cols["xH"].append(np.asarray(row.get("xH", np.full(n_z, np.nan)), dtype=np.float64))
            cols["Tb"].append(np.asarray(row.get("Tb", np.full(n_z, np.nan)), dtype=np.float64))
            cols["status"].append(row.get("status", "ok"))
            cols["error"].append(row.get("error", ""))
            cols["index"].append(int(row.get("index", -1)))
            cols["design"].append(canonical_json(row.get("design", {})))
            cols["versions"].append(canonical_json(row.get("versions", {})))
            cols["wall_time"].append(float(row.get("wall_time", np.nan)))
            cols["created"].append(time.time())
        table = pa.table(cols, schema=self._schema())
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = f"part-{stamp}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        out = self.path / RECORDS / name
        try:
            atomic_write_bytes(out, sink.getvalue().to_pybytes())
        except OSError as exc:
            raise StoreError(
                f"could not write records to {out.parent}: {exc.strerror or exc}; records already "
                "stored are intact"
            ) from exc
        return out

    def _columns(self) -> list[str]:
        return self._schema().names

    def _schema(self) -> pa.Schema:
        fields = [pa.field("key", pa.string())]
        fields += [pa.field(p, pa.float64()) for p in self.parameters]
        fields += [
            pa.field("seed", pa.int64()),
            pa.field("delta", pa.list_(pa.float64())),  # row-major (n_z, n_k)
            pa.field("xH", pa.list_(pa.float64())),
            pa.field("Tb", pa.list_(pa.float64())),
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("design", pa.string()),
            pa.field("versions", pa.string()),
            pa.field("wall_time", pa.float64()),
            pa.field("created", pa.float64()),
        ]
        return pa.schema(fields)

    # -- reading ----------------------------------------------------------------------------
    def record_files(self) -> list[Path]:
        """Complete record files (temporary, half-written ones are never listed)."""
        return sorted(
            p for p in (self.path / RECORDS).glob("*.parquet") if not p.name.startswith(TMP_PREFIX)
        )

    def read_table(self, include_failed: bool = False) -> pa.Table:
        """All records, de-duplicated by key (a successful record wins over a failed one).

        Unreadable files are skipped with a warning (``verify`` names them); files removed by a
        concurrent :meth:`compact` between listing and reading trigger a fresh listing.
        """
        table, unreadable = self._read(include_failed)
        for f, exc in unreadable:
            warnings.warn(f"skipping unreadable record file {f}: {exc}", stacklevel=2)
        return table

    def _read(self, include_failed: bool) -> tuple[pa.Table, list[tuple[Path, Exception]]]:
        """(records, [(unreadable file, why)]): the reading behind read_table and load."""
        for _attempt in range(5):
            tables, unreadable, vanished = [], [], False
            for f in self.record_files():
                try:
                    tables.append(pq.read_table(f, schema=self._schema()))
                except FileNotFoundError:
                    vanished = True
                    break
                except (pa.ArrowException, OSError) as exc:
                    unreadable.append((f, exc))
            if not vanished:
                break
        else:
            raise StoreError(f"record files of {self.path} kept changing while reading; retry")
        if not tables:
            return self._schema().empty_table(), unreadable
        table = pa.concat_tables(tables)
        table = dedupe(table)
        if not include_failed:
            table = table.filter(pa.compute.equal(table["status"], "ok"))
        return table, unreadable

    def keys(self, include_failed: bool = True) -> set[str]:
        """Keys of the records present (by default failed ones too: they are not retried)."""
        return set(self.read_table(include_failed=include_failed).column("key").to_pylist())

    def load(self, include_failed: bool = False) -> Records:
        """Records as numpy arrays; ``delta`` is (N, n_z, n_k) in mK^2.

        Raises when nothing could be read because record files are damaged: an empty result would
        otherwise pass for a dataset that was never simulated.
        """
        t, unreadable = self._read(include_failed)
        if unreadable and t.num_rows == 0:
            raise StoreError(
                f"dataset {self.name} is damaged: none of its spectra can be read "
                f"({len(unreadable)} unreadable record file(s), e.g. {unreadable[0][0].name}): "
                f"run python -m astrops store verify {self.path.parent} and restore the files "
                "it names from a backup"
            )
        for f, exc in unreadable:
            warnings.warn(f"skipping unreadable record file {f}: {exc}", stacklevel=2)
        n, n_z, n_k = t.num_rows, len(self.redshifts), len(self.k)
        seeds = t["seed"].fill_null(-1).to_numpy()
        return Records(
            keys=np.asarray(t["key"].to_pylist(), dtype=object),
            params=np.column_stack([t[p].to_numpy() for p in self.parameters])
            if n
            else np.empty((0, len(self.parameters))),
            seeds=np.asarray(seeds, dtype=np.int64),
            delta=list_column(t["delta"], (n, n_z, n_k)),
            xH=list_column(t["xH"], (n, n_z)),
            Tb=list_column(t["Tb"], (n, n_z)),
            table=t.drop_columns(["delta", "xH", "Tb"]),
        )

    def __len__(self) -> int:
        return self.read_table().num_rows

    # -- maintenance ------------------------------------------------------------------------
    def compact(self) -> int:
        """Merge record files into one de-duplicated file; returns the number of records kept.

        Safe next to readers (they de-duplicate) and serialised between compactors by a lock file.
        Records appended by other writers while compacting stay in their own files.
        """
        lock_path = self.path / ".compact.lock"
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                files = self.record_files()
                if len(files) <= 1:
                    return self.read_table(include_failed=True).num_rows
                tables = []
                for f in files:
                    try:
                        tables.append(pq.read_table(f, schema=self._schema()))
                    except (pa.ArrowException, OSError):
                        files.remove(f)  # left in place for `verify` to report
                merged = dedupe(pa.concat_tables(tables))
                sink = pa.BufferOutputStream()
                pq.write_table(merged, sink, compression="zstd")
                out = (
                    self.path
                    / RECORDS
                    / f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
                )
                atomic_write_bytes(out, sink.getvalue().to_pybytes())
                for f in files:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                return merged.num_rows
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def verify(self) -> list[str]:
        """Problems found: unreadable record files, leftover temporary files, a wrong k grid,
        malformed priors."""
        problems = []
        for f in self.record_files():
            try:
                t = pq.read_table(f, schema=self._schema())
                bad = [
                    r
                    for r in t["delta"].to_pylist()
                    if len(r) != len(self.redshifts) * len(self.k)
                ]
                if bad:
                    problems.append(f"{f}: {len(bad)} records with a wrong number of bins")
            except (pa.ArrowException, OSError) as exc:
                problems.append(f"{f}: unreadable ({exc})")
        for f in (self.path / RECORDS).glob(f"{TMP_PREFIX}*"):
            problems.append(
                f"{f}: leftover temporary file from an interrupted write (safe to delete)"
            )
        if not problems:  # the priors the class edges and prediction box come from
            try:
                self.load().priors(self.parameters)
            except StoreError as exc:
                problems.append(f"{self.name}: {exc}")
        return problems
