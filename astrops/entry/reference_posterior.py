"""Command lines of the reference on given spectra: ``python -m astrops.reference.posterior`` (any
observed spectrum) and ``python -m astrops reference-selfcheck`` (the reference on its own mocks).

Every refusal is one line on stderr and exit status 2, before any work and before anything is
written; the work is done by :mod:`astrops.reference.posterior` and
:mod:`astrops.reference.selfcheck`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from astrops.entry.arguments import doc_of


def _observation(name: str):
    """The ``conf/observation/<name>.yaml`` entry as an Observation (one line when unknown)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from astrops.data.observation import Observation

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
    obs = Observation.from_config(OmegaConf.to_container(cfg.observation, resolve=True))
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


def _setup(args: argparse.Namespace):
    """(ReferenceSetup, measured bins) from the emulator and observation; refusals as one line."""
    import numpy as np
    import torch

    from astrops.models.emulator import load_emulator
    from astrops.reference.posterior import measured_bins
    from astrops.reference.solver import ReferenceSetup

    emu = load_emulator(args.emulator)
    if not emu.error_fitted:
        raise ValueError(
            f"{args.emulator} carries no emulator-error term (made before it existed): retrain "
            "it with python train.py experiment=emulator"
        )
    obs = _observation(args.observation)
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


def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--emulator", required=True, help="emulator.pt (train.py experiment=emulator)")
    ap.add_argument("--observation", required=True, help="a conf/observation name")
    ap.add_argument("--workers", type=int, default=1, help="processes (2 on 2 cores)")
    ap.add_argument("--covariance", choices=["fixed", "theta"], default="fixed")
    ap.add_argument("--model-error", type=float, default=0.0, help="21CMMC's f (its default 0.15)")


def _checked(args: argparse.Namespace) -> str | None:
    if args.workers < 1 or not 0 <= args.model_error < 10:
        return "--workers must be >= 1 and --model-error in [0, 10) (e.g. --workers 2)"
    return None


def posterior_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops.reference.posterior",
        description=doc_of("astrops.reference.posterior"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(ap)
    ap.add_argument("--input", required=True, help="21CMMC-format npz: k, delta, redshifts")
    ap.add_argument("--output", required=True, help="FILE.csv (new)")
    ap.add_argument("--samples", type=int, default=0, help="write N posterior samples each")
    ap.add_argument("--plot", action="store_true", help="a corner plot per spectrum")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from astrops.errors import AstropsError

    out = Path(args.output)
    problem = _checked(args)
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
        setup, bins = _setup(args)
        from astrops.reference.posterior import spectra_on_bins

        data = spectra_on_bins(setup.emu, k, delta, redshifts, bins)
    except (AstropsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return _write(args, setup, data, out)


def _write(args: argparse.Namespace, setup, data, out: Path) -> int:
    import numpy as np

    from astrops.reference.posterior import columns_of
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
        ],  # fmt: skip
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


def selfcheck_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops reference-selfcheck",
        description=doc_of("astrops.reference.selfcheck"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(ap)
    ap.add_argument("--n-mocks", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="FILE.json (new)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    problem = _checked(args) or ("--n-mocks must be >= 10" if args.n_mocks < 10 else None)
    if not problem and (out.suffix != ".json" or out.exists() or not out.parent.is_dir()):
        problem = f"--out {out}: give a new .json path in an existing directory"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        setup, _ = _setup(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    from astrops.reference.selfcheck import self_consistency

    t0 = time.perf_counter()
    result = self_consistency(setup, args.n_mocks, args.seed, args.workers)
    result.update(emulator=str(Path(args.emulator).resolve()), observation=args.observation)
    result["seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("coverage", "sbc_p", "unresolved", "n")}))
    return 0
