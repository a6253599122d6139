"""Regenerate data/examples/: 10 held-out z = 8 spectra in 21CMMC's format plus their true
parameters.

    .venv/bin/python scripts/make_examples.py [--check]

Reads the bundled held-out store data/holdout (never used for training), takes the first 10 records
in key order, and writes
  data/examples/spectra_z8.npz        k (n_k,) [1/Mpc], delta (10, n_k) [mK^2] at z = 8 (the first
  two
                                      bins are NaN, as in the store: too few modes in the box)
  data/examples/spectra_z8_truth.csv  HII_EFF_FACTOR, ION_Tvir_MIN (log10 K), R_BUBBLE_MAX (Mpc),
  key
byte for byte the same on every run (fixed zip timestamps, shortest round-trip float text).
``--check`` compares instead of writing and exits 1 when the committed files differ.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from astrops.store import Store  # noqa: E402

N = 10
REDSHIFT = 8.0
NPZ = "spectra_z8.npz"
CSV = "spectra_z8_truth.csv"


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz as ``numpy.savez`` writes it, but with fixed zip timestamps so the bytes are
    reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def build(holdout: Path = ROOT / "data" / "holdout") -> dict[str, bytes]:
    """The two example files' contents, from the held-out store."""
    ds = Store(holdout).dataset()
    rec = ds.load()
    iz = [float(z) for z in ds.redshifts].index(REDSHIFT)
    order = np.argsort(rec.keys.astype(str), kind="stable")[:N]
    k = np.asarray(ds.k, dtype=np.float64)
    delta = np.asarray(rec.delta[order, iz, :], dtype=np.float64)
    npz = npz_bytes({"k": k, "delta": delta})
    lines = [",".join([*ds.parameters, "key"])]
    for i in order:
        lines.append(",".join([*(repr(float(v)) for v in rec.params[i]), str(rec.keys[i])]))
    return {NPZ: npz, CSV: ("\n".join(lines) + "\n").encode()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(ROOT / "data" / "examples"), help="output directory")
    ap.add_argument(
        "--check", action="store_true", help="compare with the files in --out instead of writing"
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    files = build()
    if args.check:
        stale = [
            n for n, b in files.items() if not (out / n).is_file() or (out / n).read_bytes() != b
        ]
        for n in stale:
            print(f"{out / n} differs from what scripts/make_examples.py writes", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
