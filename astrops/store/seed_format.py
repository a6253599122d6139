"""Import and export in the seed study's / 21CMMC's format, so users can bring spectra they already
made.

The format: a params CSV with columns ``HII_EFF_FACTOR, ION_Tvir_MIN, R_BUBBLE_MAX`` (plus
``file``, the npz of that row, and ``seed`` when known) and one npz per simulation with ``k``
(n_k,) and ``delta`` — (n_k,) for one redshift as 21CMMC's ``Likelihood1DPowerCoeval`` writes it,
or (n_z, n_k) with a ``redshifts`` key for several.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import numpy as np

from astrops.errors import StoreError
from astrops.store.dataset import Dataset


def export_seed_format(dataset: Dataset, out_dir: str | Path) -> Path:
    """Write ``params.csv`` and ``spectra/<key>.npz``; returns the CSV path."""
    out = Path(out_dir)
    recs = dataset.load()
    # keys become file names: only the store's own 32-hex record keys, never a path read from a
    # damaged file
    odd = [str(k)[:40] for k in recs.keys if not re.fullmatch(r"[0-9a-f]{32}", str(k))]
    if odd:
        raise StoreError(
            f"dataset {dataset.name} has {len(odd)} record keys that are not record hashes (e.g. "
            f"{odd[0]!r}): "
            "the store is damaged; run python -m astrops store verify"
        )
    (out / "spectra").mkdir(parents=True, exist_ok=True)
    multi = len(dataset.redshifts) > 1
    csv_path = out / "params.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *dataset.parameters, "seed"])
        for i, key in enumerate(recs.keys):
            name = f"spectra/{key}.npz"
            arrays = {"k": dataset.k, "delta": recs.delta[i] if multi else recs.delta[i, 0]}
            if multi:
                arrays["redshifts"] = np.asarray(dataset.redshifts)
            np.savez(out / name, **arrays)
            seed = "" if recs.seeds[i] < 0 else int(recs.seeds[i])
            w.writerow([name, *(repr(float(v)) for v in recs.params[i]), seed])
    return csv_path


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_seed_format(csv_path: str | Path, npz_dir: str | Path | None = None) -> list[dict]:
    """Rows of a params CSV joined to their npz spectra (by the ``file`` column, else by sorted
    order)."""
    csv_path = Path(csv_path)
    base = Path(npz_dir) if npz_dir else csv_path.parent
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(
            f"cannot read {csv_path} ({getattr(exc, 'strerror', None) or exc}): give a params CSV "
            "with --csv"
        ) from None
    if not rows:
        raise StoreError(f"{csv_path} has no rows")
    if "file" in rows[0]:
        files = [
            base / _cell(r["file"], f"{csv_path} row {i} (line {i + 2})", "file")
            for i, r in enumerate(rows)
        ]
    else:
        files = sorted(base.glob("*.npz"), key=_natural_key)
        if len(files) != len(rows):
            raise StoreError(
                f"{csv_path} has {len(rows)} rows but {base} holds {len(files)} npz files: "
                "add a 'file' column naming each row's npz"
            )
    out = []
    for i, (r, f) in enumerate(zip(rows, files, strict=True)):
        where = f"{csv_path} row {i} (line {i + 2})"
        if not f.is_file():
            raise StoreError(
                f"{where}: spectrum file {f} is missing: fix its 'file' cell or add the file"
            )
        try:
            with np.load(f, allow_pickle=False) as z:
                rec = {"k": z["k"], "delta": z["delta"], "redshifts": z.get("redshifts")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise StoreError(
                f"{where}: {f} is not an npz with 'k' and 'delta' ({exc}): replace the file"
            ) from exc
        rec["params"] = {
            k: _number(v, where, k, float) for k, v in r.items() if k not in ("file", "seed")
        }
        rec["seed"] = (
            _number(r["seed"], where, "seed", int) if r.get("seed") not in (None, "") else None
        )
        out.append(rec)
    return out


def _cell(cell: str | list | None, where: str, column: str | None) -> str:
    """A CSV cell's text, or one line naming the row, the column and the fix (blank, surplus
    cells)."""
    if column is None or isinstance(cell, list):  # csv puts surplus cells under the key None
        raise StoreError(
            f"{where} has more cells than the header has columns: remove the extra cells"
        )
    if cell is None or not cell.strip():  # None: the row is shorter than the header
        raise StoreError(f"{where}: column {column} is blank: fill in a value or delete the row")
    return cell.strip()


def _number(cell: str | list | None, where: str, column: str | None, kind: type) -> float | int:
    """A CSV cell as a number (``kind``), or one line naming the row, the column and the fix."""
    cell = _cell(cell, where, column)
    try:
        value = kind(cell)
        if not np.isfinite(value):
            raise ValueError(cell)
        return value
    except ValueError:
        raise StoreError(
            f"{where}: column {column}={cell!r} is not "
            f"{'an integer' if kind is int else 'a finite number'}: "
            "fix the cell"
        ) from None


def seed_records(
    rows: list[dict],
    k: np.ndarray,
    redshifts: list[float],
    parameters: list[str],
    priors: dict[str, list[float]] | None,
    source: str | Path,
) -> list[dict]:
    """Check seed-format rows against a configuration (k grid, redshifts, names, priors); store
    records."""
    n_z = len(redshifts)
    # the priors checked here travel with the records: training reads its class edges from them
    design = {
        "imported_from": str(Path(source).resolve()),
        **({"priors": priors} if priors else {}),
    }
    records = []
    for i, r in enumerate(rows):
        if set(r["params"]) != set(parameters):
            raise StoreError(
                f"row {i}: parameters {sorted(r['params'])} differ from the dataset's {parameters}"
            )
        for name, (lo, hi) in (priors or {}).items():
            if not lo <= r["params"][name] <= hi:
                raise StoreError(
                    f"row {i}: {name}={r['params'][name]} lies outside the prior [{lo}, {hi}] of "
                    "the "
                    "configuration: import into a configuration whose priors cover it (--config / "
                    "overrides)"
                )
        if r["k"].shape != k.shape or not np.allclose(r["k"], k, rtol=1e-6):
            raise StoreError(
                f"row {i}: k grid differs from the configuration's (relative 1e-6): "
                "import into a dataset made with the same box and binning"
            )
        delta = np.atleast_2d(r["delta"])
        zs = r["redshifts"] if r["redshifts"] is not None else redshifts[:1]
        if delta.shape != (n_z, len(k)) or not np.allclose(zs, redshifts):
            raise StoreError(
                f"row {i}: spectrum at redshifts {list(np.atleast_1d(zs))} with shape "
                f"{delta.shape}; "
                f"the dataset needs redshifts {redshifts}"
            )
        records.append(
            {
                "params": r["params"],
                "seed": r["seed"],
                "delta": delta,
                "status": "ok",
                "design": design,
            }
        )
    return records


def import_seed_format(
    dataset: Dataset,
    csv_path: str | Path,
    npz_dir: str | Path | None = None,
    priors: dict[str, list[float]] | None = None,
) -> int:
    """Append seed-format spectra to ``dataset``; every row is checked first (a bad file changes
    nothing).

    Records without a ``seed`` column are stored with the IC seed marked unknown.
    """
    records = seed_records(
        read_seed_format(csv_path, npz_dir),
        dataset.k,
        dataset.redshifts,
        dataset.parameters,
        priors,
        csv_path,
    )
    if records:
        dataset.append(records)
    return len(records)
