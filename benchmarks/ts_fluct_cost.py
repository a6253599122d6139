"""What spin-temperature fluctuations cost at HERA's H1C bands, and what the ways to afford them
change (docs/observations.md, "What would make the limits bite").

    .venv/bin/python benchmarks/ts_fluct_cost.py [--workers 2] [--out ts_cost.json]

One coeval pair at z = 7.93 / 10.37 (the H1C IDR3 band centres) per variant, one parameter point
(ζ = 30, log10 T_vir = 4.7, R_mfp = 15 Mpc) and one IC seed, each variant in its own process
with one OpenMP thread (``--workers`` of them side by side on the 2 cores). Per variant: wall
seconds on one core, and its Δ² on the window functions' k-range (0.18–1.67 1/Mpc) against the
full run (reference box, ``USE_TS_FLUCT``, the global ``ZPRIME_STEP_FACTOR`` at its 1.02):
median and largest |Δ²/Δ²_full − 1| over those bins (another box size is another realisation of
the initial conditions: its difference includes cosmic variance). A cold variant (L_X = 10^38
erg/s per M_sun/yr) shows where the H1C limits start to bite: its largest windowed Δ² over the 2σ
limit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import warnings

import numpy as np

THETA = {"HII_EFF_FACTOR": 30.0, "ION_Tvir_MIN": 4.7, "R_BUBBLE_MAX": 15.0}
REDSHIFTS = [7.92876, 10.37213]
REF = {"HII_DIM": 50, "BOX_LEN": 125, "USE_INTERPOLATION_TABLES": True}
TS = {"USE_TS_FLUCT": True}
ZPRIME = 1.02  # 21cmFAST's default global ZPRIME_STEP_FACTOR (the redshift step of the Ts history)
VARIANTS = {  # name -> (user_params, flag_options, astro_params, ZPRIME_STEP_FACTOR)
    "saturated (reference box)": (REF, {}, {}, ZPRIME),
    "full: USE_TS_FLUCT, ZPRIME_STEP_FACTOR 1.02": (REF, TS, {}, ZPRIME),
    "ZPRIME_STEP_FACTOR 1.04": (REF, TS, {}, 1.04),
    "ZPRIME_STEP_FACTOR 1.10": (REF, TS, {}, 1.10),
    "box 62.5 Mpc, HII_DIM 25 (same cells)": (
        {**REF, "HII_DIM": 25, "BOX_LEN": 62.5},
        TS,
        {},
        ZPRIME,
    ),
    "HII_DIM 25, box 125 Mpc (5 Mpc cells)": ({**REF, "HII_DIM": 25}, TS, {}, ZPRIME),
    "cold: full with L_X = 38": (REF, TS, {"L_X": 38.0}, ZPRIME),
}
FULL = "full: USE_TS_FLUCT, ZPRIME_STEP_FACTOR 1.02"


def run_variant(name: str) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    warnings.filterwarnings("ignore")
    import py21cmfast as p21c

    from astrops.simulation import CoevalSimulator

    user, flags, astro, zprime = VARIANTS[name]
    sim = CoevalSimulator(REDSHIFTS, user_params=user, flag_options=flags, astro_params=astro)
    with p21c.global_params.use(ZPRIME_STEP_FACTOR=zprime):
        rec = sim.run([{"index": 0, "params": THETA, "seed": 11}])[0]
    assert rec["status"] == "ok", rec["error"]
    k = sim.k()
    return {"name": name, "seconds": rec["wall_time"], "k": k.tolist(), "delta": rec["delta"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="ts_cost.json")
    ap.add_argument("--only", default=None, help="comma-separated variant numbers (0-based)")
    args = ap.parse_args()
    names = list(VARIANTS)
    if args.only:
        names = [names[int(i)] for i in args.only.split(",")]
    from astrops.errors import ObservationError
    from astrops.reference.band_powers import load_bands, on_window_k
    from astrops.reference.limits import limits_table

    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        runs = {r["name"]: r for r in pool.map(run_variant, names)}
    bands = sorted(load_bands("py21cmmc:data/HERA_H1C_IDR3.npz"), key=lambda b: b.z)
    full = runs.get(FULL)  # deviations need the full run in the same call
    rows = []
    for name, r in runs.items():
        row = {"variant": name, "seconds": r["seconds"]}
        if full is not None:
            row["x_full"] = r["seconds"] / full["seconds"]
        for i, band in enumerate(bands):
            try:
                d = on_window_k(np.array(r["k"]), r["delta"][i][None], band.k_window)[0]
            except ObservationError as exc:  # a box whose bins miss the windows
                row["not_on_the_windows"] = str(exc)
                break
            row[f"z{band.z:.2f}/max_delta2"] = float(np.max(d))
            if full is not None:
                ref = on_window_k(np.array(full["k"]), full["delta"][i][None], band.k_window)[0]
                dev = np.abs(d / ref - 1)
                row[f"z{band.z:.2f}/median_dev"] = float(np.median(dev))
                row[f"z{band.z:.2f}/max_dev"] = float(np.max(dev))
        if "not_on_the_windows" in row:
            rows.append(row)
            print(json.dumps(row))
            continue
        delta = np.stack([r["delta"][i] for i in range(len(bands))])[None]
        table = limits_table(bands, np.array(r["k"]), delta, np.array([list(THETA.values())]))
        row["max_ratio_to_2sigma_limit"] = float(table["ratio"].max())
        rows.append(row)
        print(json.dumps(row))
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
