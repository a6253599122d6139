"""``python -m astrops reference-limits``: what published upper limits say about θ.

    python -m astrops reference-limits --emulator EMU --observation hera_h1c_idr3 --out DIR \
        [--store data/hera_h1c] [--samples 4000] [--seed 0] [--no-emulator-error] \
        [--experiment hera_h1c] [--tracking-uri URI] [--no-log]
    python -m astrops reference-limits --emulator EMU_MULTIZ --observation hera350_1000h \
        --mock data/fresh [--mock-index 0] --out DIR            (a forecast: the same numbers)

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

With a noise-table observation the same numbers come from one mock instead: the ``--mock-index``
simulation of the store ``--mock`` (at the emulator's redshifts) with one realisation of the
observation's noise (seeded by ``--seed``), under the reference's Gaussian likelihood
(:mod:`astrops.reference.solver`): what that instrument would exclude if the sky were that mock.
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
    ap.add_argument("--mock", default=None, help="noise-table observation: store of the mock")
    ap.add_argument("--mock-index", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-emulator-error", action="store_true")
    ap.add_argument("--experiment", default="hera_h1c")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--no-log", action="store_true")
    return ap


def _setup(args: argparse.Namespace):
    """(θ → ln L, emulator, summary entries, store spectra or None); every refusal as an
    exception with one line."""
    from astrops.models.emulator import load_emulator
    from astrops.reference.posterior import observation_config

    cfg = observation_config(args.observation)
    if cfg.get("kind") != "upper_limits":
        return _mock_setup(args)
    emu = load_emulator(args.emulator)
    if not emu.error_fitted:
        raise ValueError(
            f"{args.emulator} carries no emulator-error term: retrain it (python train.py "
            "experiment=emulator_h1c)"
        )
    from astrops.reference.band_powers import load_bands
    from astrops.reference.limits import LimitsModel

    bands = load_bands(cfg["limits_file"])
    model = LimitsModel(emu, bands, float(cfg.get("model_error", 0.2)), not args.no_emulator_error)
    model.lnl(emu.box.numpy().mean(axis=1)[None])  # the emulator's k-range covers the windows
    sims = None
    if args.store:
        from astrops.reference.band_powers import on_window_k

        ds = _dataset(args.store)
        sims = (np.asarray(ds.k), *_at(ds, [b.z for b in bands]))
        for i, band in enumerate(bands):  # so do the stored spectra's, every one of them
            on_window_k(sims[0], sims[1][:, i], band.k_window)
    about = {
        "bands": [b.z for b in bands],
        "model_error": model.model_error,
        "emulator_error": model.emulator_error,
    }
    return model.lnl, emu, about, (bands, sims)


def _dataset(path: str):
    from astrops.store import Store

    return Store(path).dataset(None)


def _at(ds, redshifts: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(Δ² (N, n_z, n_k) at ``redshifts``, θ (N, P)) of a store dataset."""
    from astrops.data.selection import redshift_indices

    recs = ds.load()
    return recs.delta[:, redshift_indices(ds, redshifts), :], recs.params


def _mock_setup(args: argparse.Namespace):
    """A forecast: one stored simulation plus one noise realisation, the Gaussian reference."""
    import torch

    from astrops.reference.posterior import reference_setup, spectra_on_bins
    from astrops.reference.solver import COVARIANCE, loglike_of

    if not args.mock:
        raise ValueError(
            f"--observation {args.observation} has noise tables, not limits: give --mock STORE "
            "(a simulation to forecast on), or name a kind: upper_limits observation"
        )
    setup, bins = reference_setup(
        argparse.Namespace(
            emulator=args.emulator,
            observation=args.observation,
            model_error=0.0,
            covariance=COVARIANCE,
        )
    )
    ds = _dataset(args.mock)
    delta, params = _at(ds, list(setup.emu.redshifts))
    if not 0 <= args.mock_index < len(params):
        raise ValueError(f"--mock-index {args.mock_index}: the store holds {len(params)}")
    i = args.mock_index
    z = np.array(setup.emu.redshifts)
    clean = spectra_on_bins(setup.emu, np.asarray(ds.k), delta[i : i + 1], z, bins)[0]
    rng = np.random.default_rng([args.seed, args.mock_index])
    data = clean + setup.noise * torch.as_tensor(rng.standard_normal(tuple(clean.shape)))
    truth = dict(zip(setup.emu.param_names, map(float, params[args.mock_index]), strict=True))
    about = {"mock": str(Path(args.mock).resolve()), "mock_index": args.mock_index, "truth": truth}
    return loglike_of(setup, data), setup.emu, about, None


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
        lnl, emu, about, limits = _setup(args)
    except (AstropsError, DataConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    out.mkdir()
    t0 = time.perf_counter()
    summary = run_limits(lnl, emu, out, args.samples, args.seed)
    if limits is not None and limits[1] is not None:
        from astrops.reference.limits import limits_table

        table = limits_table(limits[0], *limits[1])
        table.to_csv(out / "limits_vs_simulations.csv", index=False)
        summary.update(
            n_simulations=len(limits[1][2]), max_ratio_to_limit=float(table["ratio"].max())
        )
    summary.update(about, seconds=time.perf_counter() - t0)
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


def run_limits(lnl, emu, out: Path, n_samples: int, seed: int) -> dict:
    """The posterior of ``lnl`` under the emulator's prior box: samples, bounds, corner plot;
    returns the summary's numbers."""
    from types import SimpleNamespace

    import pandas as pd

    from astrops.plotting import write_corner_plots
    from astrops.reference.grid import N_CELLS, grid_points, grid_posterior
    from astrops.reference.limits import one_sided_bounds, prior_volume_fractions

    box = emu.box.numpy().astype(np.float64)
    names = list(emu.param_names)
    post = grid_posterior(lnl, box)
    _, mesh = grid_points(box[:, 0], box[:, 1], N_CELLS)
    prior_lnl = lnl(mesh)
    best = np.unravel_index(int(np.argmax(post.mass)), post.mass.shape)
    peak = np.array([[c[i] for c, i in zip(post.centres, best, strict=True)]])
    samples = post.sample(n_samples, np.random.default_rng(seed))
    np.savez(out / "samples.npz", samples=samples, parameters=np.array(names))
    pd.DataFrame(one_sided_bounds(post, box, names)).to_csv(out / "bounds.csv", index=False)
    view = SimpleNamespace(parameters=names, prior_box=dict(zip(names, box.tolist(), strict=True)))
    write_corner_plots(samples[None], view, out / "corner")
    return {
        **prior_volume_fractions(post, box, prior_lnl, float(lnl(peak)[0])),
        "lnl_spread_over_prior": float(prior_lnl.max() - prior_lnl.min()),
        "grid_resolved": bool(post.resolved),
        "grid_stages": int(post.stages),
        "seed": seed,
    }
