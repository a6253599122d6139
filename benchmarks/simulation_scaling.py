"""Simulation scaling: workers 1 vs 2, shared initial conditions (sims_per_ic), peak memory per
HII_DIM.

    .venv/bin/python benchmarks/simulation_scaling.py [--n 8] [--dims 32,50,64,100]

Throughput runs go through ``simulate_into_store`` (the code simulate.py runs) into temporary
stores, reference configuration at z = 8, so start-up of the worker processes is included. Peak
memory is the maximum resident set size of a fresh process running one simulation at each HII_DIM
(BOX_LEN scaled with HII_DIM at the reference 2.5 Mpc cells) (VmHWM of that process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

from astrops.simulation import CoevalSimulator, Design, simulate_into_store  # noqa: E402
from astrops.store import Store  # noqa: E402

USER = {"HII_DIM": 50, "BOX_LEN": 125, "USE_INTERPOLATION_TABLES": True}
PRIORS = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]}

MEMORY_PROBE = """
import json, sys, warnings
warnings.filterwarnings("ignore")
from astrops.simulation import CoevalSimulator
dim = int(sys.argv[1])
sim = CoevalSimulator(redshifts=[8.0], user_params={"HII_DIM": dim, "BOX_LEN": 2.5 * dim, "USE_INTERPOLATION_TABLES": True})
rec = sim.run([{"index": 0, "params": {"HII_EFF_FACTOR": 30.0, "ION_Tvir_MIN": 4.7, "R_BUBBLE_MAX": 15.0}, "seed": 1}])[0]
# VmHWM: peak resident memory of this process image (ru_maxrss would include the forking parent's)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"dim": dim, "status": rec["status"], "wall": rec["wall_time"], "peak_mb": hwm / 1024}))
"""


def throughput(n: int, workers: int, sims_per_ic: int, base_seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sim = CoevalSimulator(redshifts=[8.0], user_params=USER)
        design = Design(PRIORS, n=n, base_seed=base_seed, sims_per_ic=sims_per_ic)
        t0 = time.perf_counter()
        summary = simulate_into_store(sim, design, Store(tmp), workers=workers, progress=False)
        wall = time.perf_counter() - t0
        assert summary.computed == n
    return n / wall * 3600


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dims", default="32,50,64,100")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    print(
        f"reference configuration, z = 8, {args.n} simulations per run, {args.reps} alternating "
        "repetitions"
    )
    rates: dict[str, list[float]] = {
        "1 worker": [],
        "2 workers": [],
        "1 worker, sims_per_ic=4": [],
    }
    for r in range(0 if args.skip_throughput else args.reps):
        order = list(rates) if r % 2 == 0 else list(reversed(rates))
        for name in order:
            workers = 2 if name.startswith("2") else 1
            k = 4 if "sims_per_ic" in name else 1
            rates[name].append(throughput(args.n, workers, k, base_seed=9000 + r))
    if args.skip_throughput:
        rates = {}
    print("| set-up | spectra per hour (median) | runs |")
    print("|---|---|---|")
    med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    for k, v in rates.items():
        print(f"| {k} | {med[k]:.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
    if med:
        print(
            f"\nworkers 2 / 1: {med['2 workers'] / med['1 worker']:.2f}x;  "
            f"sims_per_ic=4 / 1: {med['1 worker, sims_per_ic=4'] / med['1 worker']:.2f}x"
        )
    print("\n| HII_DIM | BOX_LEN Mpc | wall s (1 thread) | peak RSS MB |")
    print("|---|---|---|---|")
    for dim in map(int, args.dims.split(",")):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(dim)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=True,
        )
        d = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {dim} | {2.5 * dim:g} | {d['wall']:.1f} | {d['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
