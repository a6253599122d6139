"""Spectra per core-hour: astrops vs the seed study's loop, side by side, alternating, same points
and seeds.

    .venv/bin/python benchmarks/simulation_throughput.py --reps 7

Seed loop, per simulation (as the seed study ran it): a new CoreCoevalModule +
Likelihood1DPowerCoeval (simulate=True, datafile) chain, whose set-up writes every box to
21cmFAST's cache, then ``cache_tools.clear_cache()``. Its cache points at a temporary directory
(clear_cache empties it). astrops, per simulation: ``CoevalSimulator.run`` (run_coeval with
write=False) + a durable store append. Both run in this one process, one core (N_THREADS=1),
alternating order each repetition. A third pass times astrops' steps separately to show where the
time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")


from astrops.simulation import CoevalSimulator, Design  # noqa: E402
from astrops.store import Store  # noqa: E402

USER = {"HII_DIM": 50, "BOX_LEN": 125, "USE_INTERPOLATION_TABLES": True}
PRIORS = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]}


def seed_loop_once(point: dict, workdir: str) -> float:
    import py21cmfast as p21c
    from py21cmfast import cache_tools
    from py21cmmc import CoreCoevalModule, Likelihood1DPowerCoeval, build_computation_chain

    t0 = time.perf_counter()
    core = CoreCoevalModule(
        redshift=8.0,
        user_params=USER,
        astro_params=point["params"],
        initial_conditions_seed=point["seed"],
        regenerate=True,
        cache_dir=p21c.config["direc"],
    )
    lk = Likelihood1DPowerCoeval(
        datafile=[os.path.join(workdir, f"ps_{point['index']}.npz")],
        noisefile=None,
        min_k=0.1,
        max_k=1.0,
        simulate=True,
    )
    build_computation_chain(core, lk)
    cache_tools.clear_cache()
    return time.perf_counter() - t0


def astrops_once(sim: CoevalSimulator, ds, point: dict) -> float:
    t0 = time.perf_counter()
    ds.append(sim.run([point]))
    return time.perf_counter() - t0


def astrops_steps(sim: CoevalSimulator, ds, point: dict) -> dict[str, float]:
    """The same work as ``sim.run`` + append, timed per 21cmFAST step."""
    import py21cmfast as p21c

    t = {}
    user = p21c.UserParams(USER)
    t0 = time.perf_counter()
    ic = p21c.initial_conditions(
        user_params=user, random_seed=point["seed"], write=False, regenerate=True
    )
    t["initial conditions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pt = p21c.perturb_field(redshift=8.0, init_boxes=ic, write=False, regenerate=True)
    t["perturb"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ib = p21c.ionize_box(
        perturbed_field=pt, astro_params=point["params"], write=False, regenerate=True
    )
    bt = p21c.brightness_temperature(
        ionized_box=ib, perturbed_field=pt, write=False, regenerate=True
    )
    t["ionize + brightness temp."] = time.perf_counter() - t0
    t0 = time.perf_counter()
    delta = sim.delta(bt.brightness_temp)
    t["power spectrum (21CMMC)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds.append([{**point, "delta": delta[None], "xH": [float(ib.xH_box.mean())], "Tb": [0.0]}])
    t["store write"] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    import py21cmfast as p21c

    tmp = tempfile.mkdtemp(prefix="astrops-bench-")
    p21c.config["direc"] = os.path.join(tmp, "seed-cache")
    os.makedirs(p21c.config["direc"], exist_ok=True)
    sim = CoevalSimulator(redshifts=[8.0], user_params=USER)
    ds = Store(os.path.join(tmp, "store")).create_dataset(
        "bench", sim.spec(), list(PRIORS), [8.0], sim.k()
    )
    ds_steps = Store(os.path.join(tmp, "store2")).create_dataset(
        "bench", sim.spec(), list(PRIORS), [8.0], sim.k()
    )
    design = Design(PRIORS, n=args.reps + 1, base_seed=424242)
    # warm-up of both paths (imports, interpolation tables)
    seed_loop_once(design.point(args.reps), tmp)
    astrops_once(sim, ds, design.point(args.reps))
    seed_t, ours_t, steps = [], [], []
    for r in range(args.reps):
        p = design.point(r)
        order = ("seed", "astrops") if r % 2 == 0 else ("astrops", "seed")
        for side in order:
            (seed_t if side == "seed" else ours_t).append(
                seed_loop_once(p, tmp) if side == "seed" else astrops_once(sim, ds, p)
            )
        steps.append(astrops_steps(sim, ds_steps, p))
    med_s, med_o = statistics.median(seed_t), statistics.median(ours_t)
    ratios = [s / o for s, o in zip(seed_t, ours_t, strict=True)]
    print(
        f"machine: {os.cpu_count()} cores; one process, OMP_NUM_THREADS=1; {args.reps} "
        "alternating repetitions"
    )
    print("| side | median s/sim | min | max | spectra per core-hour |")
    print("|---|---|---|---|---|")
    for name, ts in (
        ("seed loop (21CMMC chain + datafile + clear_cache)", seed_t),
        ("astrops (run_coeval write=False + store)", ours_t),
    ):
        print(
            f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} | "
            f"{3600 / statistics.median(ts):.0f} |"
        )
    print(
        f"\nthroughput ratio astrops / seed: {med_s / med_o:.2f}x (median of per-repetition "
        "ratios "
        f"{statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print("\nwhere astrops' time goes (median s):")
    total = sum(statistics.median(s[k] for s in steps) for k in steps[0])
    for k in steps[0]:
        m = statistics.median(s[k] for s in steps)
        print(f"  {k:28s} {m:.3f}  ({100 * m / total:.0f} %)")


if __name__ == "__main__":
    main()
