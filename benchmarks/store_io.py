"""Store I/O: load 100 000 spectra into arrays, append throughput, bytes on disk per spectrum.

    .venv/bin/python benchmarks/store_io.py [--n 100000] [--reps 5]

Synthetic records with the reference layout (4 redshifts x 22 k-bins, float64).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from astrops.store import Store

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def rows(start: int, n: int, rng) -> list[dict]:
    return [
        {
            "params": dict(zip(PARAMS, rng.random(3) * [195, 2, 15] + [5, 4, 5], strict=True)),
            "seed": start + i,
            "delta": rng.random((4, 22)) * 50,
            "xH": rng.random(4),
            "Tb": rng.random(4),
            "index": start + i,
        }
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    k = np.geomspace(0.05, 2.0, 22)
    with tempfile.TemporaryDirectory() as tmp:
        ds = Store(tmp).create_dataset("bench", {"bench": 1}, PARAMS, [7.0, 8.0, 9.0, 10.0], k)
        # appends as simulate.py makes them: one small file per finished simulation
        one = [rows(i, 1, rng) for i in range(200)]
        t0 = time.perf_counter()
        for r in one:
            ds.append(r)
        per_record = (time.perf_counter() - t0) / len(one)
        # bulk: the rest in chunks of 10 000, then compaction into one shard
        t0 = time.perf_counter()
        for start in range(200, args.n, 10_000):
            ds.append(rows(start, min(10_000, args.n - start), rng))
        bulk = (args.n - 200) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        ds.compact()
        compact_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(ds.path, "records").glob("*.parquet"))
        loads = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            r = ds.load()
            loads.append(time.perf_counter() - t0)
        assert r.delta.shape == (args.n, 4, 22)
    print("| what | value |\n|---|---|")
    print(
        f"| load {args.n} spectra into arrays (median of {args.reps}) | "
        f"{statistics.median(loads):.2f} s "
        f"(min {min(loads):.2f}, max {max(loads):.2f}) |"
    )
    print(
        f"| append, one record per file (as simulate.py writes) | {per_record * 1e3:.1f} "
        "ms/record |"
    )
    print(f"| append, 10 000 records per file | {bulk:.0f} records/s |")
    print(f"| compact {args.n} records into one file | {compact_s:.2f} s |")
    print(
        "| size on disk, compacted (zstd Parquet, 4 x 22 float64 + metadata) | "
        f"{size / args.n:.0f} bytes/spectrum |"
    )


if __name__ == "__main__":
    main()
