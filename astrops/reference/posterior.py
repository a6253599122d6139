"""The likelihood reference for any observed spectrum:

    python -m astrops.reference.posterior --emulator EMU --observation NAME --input FILE.npz \
        --output FILE.csv [--samples N] [--plot] [--workers W] [--covariance fixed|theta] \
        [--model-error F]

``--input`` is a 21CMMC-format npz (``k`` [1/Mpc], ``delta`` (N, n_z, n_k) [mK²], ``redshifts``),
the format predict.py reads; its redshifts must be the emulator's. ``--observation`` names a
``conf/observation`` entry: its noise tables and k-range say which bins are measured and how
noisy. Spectra on another k-grid are interpolated in log k onto the emulator's measured bins
(never extrapolated). The posterior is the emulator inside 21CMMC's Gaussian likelihood with the
emulator's error, on a grid refined by mass under the training priors
(:mod:`astrops.reference.solver`).

Writes predict.py's columns (``<p>``, ``<p>_std``, ``<p>_median``, ``<p>_lo68``, ``<p>_hi68``,
``<p>_lo95``, ``<p>_hi95``, ``out_of_distribution``, ``ood_reason``) with a ``.json`` beside it;
with ``--samples N`` ``<stem>_samples.npz`` (``samples`` (N_spectra, N, 3), ``parameters``); with
``--plot`` a corner plot per spectrum. A row is flagged out of distribution when its grid did not
resolve or when the emulated spectrum at the posterior's peak misdescribes it (χ² p < 10⁻³).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrops.errors import InputError
from astrops.reference.solver import COVARIANCE, COVARIANCES

CHI2_ALPHA = 1e-3  # a peak χ² this improbable: the emulated model does not describe the spectrum


def measured_bins(emu, sigma: np.ndarray) -> list[int]:
    """The emulator's bins the observation measures at every redshift (sigma: (n_z, n_k))."""
    return [int(b) for b in emu.bins.tolist() if np.isfinite(sigma[:, b]).all()]


def spectra_on_bins(
    emu, k: np.ndarray, delta: np.ndarray, redshifts: np.ndarray | None, bins: list[int]
) -> torch.Tensor:
    """The input's Δ² (N, n_z, len(bins)) on the emulator's measured bins; any problem is one
    :class:`InputError` line, raised before any work."""
    from astrops.data.observation import regrid_log_k

    zs = list(emu.redshifts)
    if redshifts is None and len(zs) == 1 and delta.ndim == 2:
        redshifts, delta = np.array(zs), delta[:, None, :]
    if redshifts is None or np.shape(redshifts) != (len(zs),) or not np.allclose(redshifts, zs):
        given = "none" if redshifts is None else np.atleast_1d(redshifts).tolist()
        raise InputError(
            f"input redshifts {given} are not the emulator's {zs}: give 'redshifts' and delta "
            "(N, n_z, n_k) at exactly these, in this order"
        )
    if delta.ndim != 3 or delta.shape[1:] != (len(zs), len(k)):
        raise InputError(
            f"input delta has shape {delta.shape}: give (N, {len(zs)}, {len(k)}) for "
            f"{len(zs)} redshifts and {len(k)} k-bins"
        )
    if not np.isfinite(delta).any():
        raise InputError("input delta is NaN everywhere: give the measured Δ² [mK²]")
    emu_k = np.asarray(emu.k, dtype=np.float64)
    if len(k) == len(emu_k) and np.allclose(k, emu_k, rtol=1e-6, atol=0):
        out = delta[:, :, bins]
    else:
        out = regrid_log_k(k, delta, emu_k[bins])
        if not np.isfinite(out).any(axis=(0, 1)).all():
            finite = k[np.isfinite(delta).reshape(-1, len(k)).all(axis=0)]
            span = f"{finite.min():.4g}..{finite.max():.4g}" if len(finite) else "nothing"
            raise InputError(
                f"input k-grid (finite in every spectrum: {span} 1/Mpc) cannot be interpolated "
                f"onto the bins the observation measures ({emu_k[bins].min():.4g}.."
                f"{emu_k[bins].max():.4g} 1/Mpc): give k in 1/Mpc covering them"
            )
    bad = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))
    if len(bad):
        raise InputError(
            f"spectra {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''} have NaN or inf on "
            "measured bins: drop them or fill those bins"
        )
    return torch.as_tensor(out, dtype=torch.float64)


def ood_columns(summaries: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``out_of_distribution`` and ``ood_reason`` per spectrum: an unresolved grid, a bad fit."""
    from scipy.stats import chi2

    flags, reasons = [], []
    for s in summaries:
        why = []
        if not s["resolved"]:
            why.append("reference grid unresolved")
        p = float(chi2.sf(s["chi2"], s["dof"]))
        if p < CHI2_ALPHA:
            why.append(f"peak chi2 {s['chi2']:.1f} for {s['dof']} values (p {p:.1e})")
        flags.append(bool(why))
        reasons.append("; ".join(why))
    return np.array(flags), np.array(reasons, dtype=object)


def columns_of(summaries: list[dict[str, Any]], parameters: list[str]) -> dict[str, np.ndarray]:
    """predict.py's column layout."""
    cols: dict[str, np.ndarray] = {}
    for j, p in enumerate(parameters):
        cols[p] = np.array([s["mean"][j] for s in summaries])
        cols[f"{p}_std"] = np.array([s["std"][j] for s in summaries])
        for q in ("median", "lo68", "hi68", "lo95", "hi95"):
            cols[f"{p}_{q}"] = np.array([s[q][j] for s in summaries])
    cols["out_of_distribution"], cols["ood_reason"] = ood_columns(summaries)
    return cols


def observation_config(name: str) -> dict[str, Any]:
    """The ``conf/observation/<name>.yaml`` entry, composed and resolved (one line when
    unknown)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parents[2]))
    conf = Path(os.environ["ASTROPS_ROOT"]) / "conf"
    known = sorted(p.stem for p in (conf / "observation").glob("*.yaml"))
    if name not in known:
        raise ValueError(
            f"--observation {name!r} is not in conf/observation: choose one of {known}"
        )
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("train", overrides=[f"observation={name}"])
    except HydraException as exc:
        raise ValueError(f"--observation {name}: {str(exc).splitlines()[0]}") from None
    return OmegaConf.to_container(cfg.observation, resolve=True)


def observation_named(name: str):
    """The ``conf/observation/<name>.yaml`` entry as an Observation (one line when unknown)."""
    from astrops.data.observation import Observation

    obs = Observation.from_config(observation_config(name))
    if obs is None:
        raise ValueError(
            "--observation none has no noise: name an instrument (e.g. hera350_1000h)"
        )
    if obs.k_bins is not None:
        raise ValueError(
            f"--observation {name} has its own k-bins; the reference works on the simulations' "
            "bins: choose an observation with k_bins: null"
        )
    return obs


def reference_setup(args: argparse.Namespace):
    """(ReferenceSetup, measured bins) from the emulator and observation; refusals as one line."""
    from astrops.models.emulator import load_emulator
    from astrops.reference.solver import ReferenceSetup

    emu = load_emulator(args.emulator)
    if not emu.error_fitted:
        raise ValueError(
            f"{args.emulator} carries no emulator-error term (made before it existed): retrain "
            "it with python train.py experiment=emulator"
        )
    obs = observation_named(args.observation)
    sigma = obs.sigma(np.asarray(emu.k, dtype=np.float64), list(emu.redshifts))
    bins = measured_bins(emu, sigma)
    if not bins:
        raise ValueError(
            f"--observation {args.observation} measures none of the emulator's k-bins: check "
            "its k-range"
        )
    emu_bins = emu.bins.tolist()
    setup = ReferenceSetup(
        emu,
        [emu_bins.index(b) for b in bins],
        torch.as_tensor(sigma[:, bins], dtype=torch.float64),
        emu.box.numpy().astype(np.float64),
        model_error=args.model_error,
        covariance=args.covariance,
    )
    return setup, bins


def add_common_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--emulator", required=True, help="emulator.pt (train.py experiment=emulator)")
    ap.add_argument("--observation", required=True, help="a conf/observation name")
    ap.add_argument("--workers", type=int, default=1, help="processes (2 on 2 cores)")
    ap.add_argument("--covariance", choices=list(COVARIANCES), default=COVARIANCE)
    ap.add_argument("--model-error", type=float, default=0.0, help="21CMMC's f (its default 0.15)")


def argument_problem(args: argparse.Namespace) -> str | None:
    if args.workers < 1 or not 0 <= args.model_error < 10:
        return "--workers must be >= 1 and --model-error in [0, 10) (e.g. --workers 2)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops.reference.posterior",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(ap)
    ap.add_argument("--input", required=True, help="21CMMC-format npz: k, delta, redshifts")
    ap.add_argument("--output", required=True, help="FILE.csv (new)")
    ap.add_argument("--samples", type=int, default=0, help="write N posterior samples each")
    ap.add_argument("--plot", action="store_true", help="a corner plot per spectrum")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from astrops.errors import AstropsError

    out = Path(args.output)
    problem = argument_problem(args)
    if args.samples < 0:
        problem = "--samples must be >= 0"
    elif out.suffix != ".csv" or out.exists() or not out.parent.is_dir():
        problem = f"--output {out}: give a new .csv path in an existing directory"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        from astrops.spectra_files import read_spectra_npz

        k, delta, redshifts = read_spectra_npz(args.input)
        setup, bins = reference_setup(args)
        data = spectra_on_bins(setup.emu, k, delta, redshifts, bins)
    except (AstropsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return _write(args, setup, data, out)


def _write(args: argparse.Namespace, setup, data, out: Path) -> int:
    from astrops.reference.solver import reference_posteriors
    from astrops.spectra_files import write_csv

    t0 = time.perf_counter()
    draws = max(args.samples, 2000 if args.plot else 0, 1000)
    results = reference_posteriors(setup, data, args.workers, args.seed, draws)
    summaries = [r[0] for r in results]
    params = list(setup.emu.param_names)
    write_csv(columns_of(summaries, params), out)
    meta: dict[str, Any] = {
        "predictions": str(out.resolve()),
        "emulator": str(Path(args.emulator).resolve()),
        "input": str(Path(args.input).resolve()),
        "observation": args.observation,
        "covariance": args.covariance,
        "model_error": args.model_error,
        "parameters": {p: list(map(float, b)) for p, b in zip(params, setup.box, strict=True)},
        "per_spectrum": [
            {
                "resolved": s["resolved"],
                "grid_stages": s["stages"],
                "peak_chi2": s["chi2"],
                "dof": s["dof"],
            }
            for s in summaries
        ],
        "seconds": time.perf_counter() - t0,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    samples = np.stack([r[1] for r in results])
    if args.samples:
        path = out.with_name(f"{out.stem}_samples.npz")
        np.savez(path, samples=samples[:, : args.samples], parameters=np.array(params))
    if args.plot:
        from types import SimpleNamespace

        from astrops.plotting import write_corner_plots

        box = {p: tuple(b) for p, b in zip(params, setup.box.tolist(), strict=True)}
        view = SimpleNamespace(parameters=params, prior_box=box)
        write_corner_plots(samples, view, out.with_name(f"{out.stem}_corner"))
    print(os.path.abspath(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
