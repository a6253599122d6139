"""``python -m astrops reference-limits``: what published upper limits say about θ.

    python -m astrops reference-limits --emulator EMU --observation hera_h1c_idr3 --out DIR \
        [--store data/hera_h1c] [--samples 4000] [--seed 0] [--no-emulator-error] \
        [--experiment hera_h1c] [--tracking-uri URI] [--no-log]

The emulator (``python train.py experiment=emulator_h1c``) inside the one-sided upper-limit
likelihood of the named ``kind: upper_limits`` observation, on the reference's mass-refined grid
(:mod:`astrops.reference.limits`). Writes into the new directory DIR: ``samples.npz``
(``samples`` (N, 3), ``parameters``), ``corner_0.png``, ``bounds.csv`` (per parameter: the
one-sided 95 % bounds and the two-sided 95 % interval beside the prior's, and which the data move),
``summary.json`` (excluded prior volume at 95 % by HPD region and by likelihood ratio, information
gain, the spread of ln L over the prior, the grid's stages) and, with ``--store``, a store of
simulations at the bands, ``limits_vs_simulations.csv``: per band, field and k-bin the 2σ limit
beside the largest windowed Δ² any simulation reaches. Logged as one ``reference-limits`` run in
``<experiment>-analysis``. Refusals are one line on stderr, exit 2, before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from astrops.entry.arguments import doc_of


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m astrops reference-limits",
        description=doc_of("astrops.entry.reference_limits"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--emulator", required=True, help="emulator.pt at the bands' redshifts")
    ap.add_argument("--observation", required=True, help="a kind: upper_limits observation")
    ap.add_argument("--out", required=True, help="a new directory")
    ap.add_argument("--store", default=None, help="simulations at the bands, for the table")
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-emulator-error", action="store_true")
    ap.add_argument("--experiment", default="hera_h1c")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--no-log", action="store_true")
    return ap


def _setup(args: argparse.Namespace):
    """(LimitsModel, store spectra or None); every refusal as an exception with one line."""
    from astrops.models.emulator import load_emulator
    from astrops.reference.band_powers import load_bands
    from astrops.reference.limits import LimitsModel
    from astrops.reference.posterior import observation_config

    cfg = observation_config(args.observation)
    if cfg.get("kind") != "upper_limits":
        raise ValueError(
            f"--observation {args.observation} is not a set of upper limits (kind: "
            "upper_limits): for noise tables use python -m astrops reference-posterior"
        )
    emu = load_emulator(args.emulator)
    if not emu.error_fitted:
        raise ValueError(
            f"{args.emulator} carries no emulator-error term: retrain it (python train.py "
            "experiment=emulator_h1c)"
        )
    bands = load_bands(cfg["limits_file"])
    model = LimitsModel(emu, bands, float(cfg.get("model_error", 0.2)), not args.no_emulator_error)
    sims = None
    if args.store:
        from astrops.data.selection import redshift_indices
        from astrops.store import Store

        ds = Store(args.store).dataset(None)
        recs = ds.load()
        zi = redshift_indices(ds, [b.z for b in bands])
        sims = (np.asarray(ds.k), recs.delta[:, zi, :], recs.params)
    return model, sims


def limits_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() or not out.parent.is_dir():
        print(f"error: --out {out}: give a new directory in an existing one", file=sys.stderr)
        return 2
    if args.samples < 1:
        print("error: --samples must be >= 1", file=sys.stderr)
        return 2
    from astrops.errors import AstropsError, DataConfigError

    try:
        model, sims = _setup(args)
    except (AstropsError, DataConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    out.mkdir()
    summary = run_limits(model, sims, out, args.samples, args.seed)
    summary.update(emulator=str(Path(args.emulator).resolve()), observation=args.observation)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("excluded_volume_lr95", "excluded_volume_hpd95")}))
    if not args.no_log:
        from astrops.tracking import default_tracking_uri
        from astrops.tracking.analysis_run import log_analysis_run

        metrics = {
            k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and k != "seed"
        }
        run_id = log_analysis_run(
            metrics,
            out,
            args.experiment,
            args.tracking_uri or default_tracking_uri(),
            {"kind": "reference-limits", "observation": args.observation},
            "reference-limits",
        )
        print(f"MLflow run {run_id} in experiment '{args.experiment}-analysis'")
    print(out.resolve())
    return 0


def run_limits(model, sims, out: Path, n_samples: int, seed: int) -> dict:
    """The posterior and every file of the command; returns the summary."""
    from types import SimpleNamespace

    import pandas as pd

    from astrops.plotting import write_corner_plots
    from astrops.reference.grid import N_CELLS, grid_points, grid_posterior
    from astrops.reference.limits import limits_table, one_sided_bounds, prior_volume_fractions

    t0 = time.perf_counter()
    box = model.emu.box.numpy().astype(np.float64)
    names = list(model.emu.param_names)
    post = grid_posterior(model.lnl, box)
    _, mesh = grid_points(box[:, 0], box[:, 1], N_CELLS)
    prior_lnl = model.lnl(mesh)
    samples = post.sample(n_samples, np.random.default_rng(seed))
    np.savez(out / "samples.npz", samples=samples, parameters=np.array(names))
    pd.DataFrame(one_sided_bounds(post, box, names)).to_csv(out / "bounds.csv", index=False)
    view = SimpleNamespace(parameters=names, prior_box=dict(zip(names, box.tolist(), strict=True)))
    write_corner_plots(samples[None], view, out / "corner")
    summary = {
        **prior_volume_fractions(post, box, prior_lnl),
        "lnl_spread_over_prior": float(prior_lnl.max() - prior_lnl.min()),
        "grid_resolved": bool(post.resolved),
        "grid_stages": int(post.stages),
        "model_error": model.model_error,
        "emulator_error": model.emulator_error,
        "bands": [b.z for b in model.bands],
        "seed": seed,
    }
    if sims is not None:
        table = limits_table(model.bands, *sims)
        table.to_csv(out / "limits_vs_simulations.csv", index=False)
        summary["n_simulations"] = len(sims[2])
        summary["max_ratio_to_limit"] = float(table["ratio"].max())
    summary["seconds"] = time.perf_counter() - t0
    return summary
