"""``python -m astrops noise-tables OBSERVATION|all [--out DIR] [--force]``: the thermal-noise
tables of an observation (21cmSense), written by :mod:`astrops.simulation.sensitivity`."""

from __future__ import annotations

import argparse
from pathlib import Path

from astrops.simulation import sensitivity


def noise_tables_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m astrops noise-tables",
        description="Write 21CMMC-format thermal-noise tables (21cmSense) to "
        "OUT/<observation>/z<z>.npz.",
    )
    parser.add_argument("observation", choices=[*sensitivity.OBSERVATIONS, "all"])
    parser.add_argument("--out", default="data/noise", help="root directory (default data/noise)")
    parser.add_argument("--force", action="store_true", help="recompute tables that exist")
    args = parser.parse_args(argv)
    names = list(sensitivity.OBSERVATIONS) if args.observation == "all" else [args.observation]
    for name in names:
        sensitivity.write_tables(
            name, Path(args.out) / name, force=args.force, log=lambda m: print(m, flush=True)
        )
        print(
            f"{name}: tables hash {sensitivity.tables_hash(Path(args.out) / name)[:16]}",
            flush=True,
        )
    return 0
