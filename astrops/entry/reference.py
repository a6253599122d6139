"""Command lines of the likelihood reference: ``python -m astrops reference`` (the reference
against the networks on held-out mocks) and ``python -m astrops emulator-check``.

Parsing and refusals live here, in the entry layer; the work is done by
:mod:`astrops.reference.compare` and :mod:`astrops.reference.emulator_check`. Each ``*_main(argv)``
returns the exit status: 0 done, 2 bad input (one line on stderr, before any work).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from astrops.entry.arguments import doc_of


def reference_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops reference",
        description=doc_of("astrops.reference.compare"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--emulator", required=True, help="emulator.pt (python train.py experiment=emulator)"
    )
    ap.add_argument(
        "--flow",
        required=True,
        help="flow ensemble directory (e.g. experiment=hera350_multiz_posterior)",
    )
    ap.add_argument("--gaussian", required=True, help="Gaussian ensemble of the same observation")
    ap.add_argument(
        "--test-store", required=True, help="held-out simulations (the mocks: the first --n-mocks)"
    )
    ap.add_argument(
        "--store", default=None, help="the training store, when not where the checkpoints say"
    )
    ap.add_argument("--n-mocks", type=int, default=100)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes for the reference posteriors (2 on 2 cores)",
    )
    ap.add_argument(
        "--model-errors",
        type=float,
        nargs="+",
        default=[0.0, 0.15],
        help="21CMMC's modelling error f, one reference per value",
    )
    ap.add_argument(
        "--covariance", choices=["fixed", "theta"], default="fixed"
    )  # solver.COVARIANCE
    ap.add_argument("--out", default="reference_comparison")
    ap.add_argument("--experiment", default="astrops")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--no-log", action="store_true")
    args = ap.parse_args(argv)
    from astrops.errors import StoreError
    from astrops.reference import compare

    out = Path(args.out)
    if any(not 0 <= f < 10 for f in args.model_errors):
        print(
            "error: --model-errors must lie in [0, 10) (21CMMC's default: 0.15)", file=sys.stderr
        )
        return 2
    if args.n_mocks < 1 or args.workers < 1:
        print(
            "error: --n-mocks and --workers must be at least 1 (e.g. --n-mocks 100 --workers 2)",
            file=sys.stderr,
        )
        return 2
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out}: give a new or empty directory", file=sys.stderr)
        return 2
    try:
        result = compare.run_comparison(
            args.emulator,
            args.flow,
            args.gaussian,
            args.test_store,
            args.store,
            args.n_mocks,
            out,
            args.workers,
            tuple(args.model_errors),
            args.covariance,
        )
    except (ValueError, StoreError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(compare.markdown(result["table"]))
    print(
        f"{result['summary']['n_mocks']} mocks in {result['summary']['time/comparison_s']:.0f} s; "
        f"files in {out}"
    )
    if not args.no_log:
        from astrops.tracking import default_tracking_uri
        from astrops.tracking.analysis_run import log_analysis_run

        # ≤ 40 keys (astrops.tracking.summary): the target figures; every number is in
        # comparison.csv
        metrics = {
            f"f{r.f:g}/{r.model}/{m}/{r.parameter}": float(getattr(r, m))
            for r in result["table"].itertuples()
            if r.model != "reference"
            for m in ("median_abs_shift", "median_width_ratio")
        }
        metrics.update(
            {
                f"f{r.f:g}/reference/coverage68/{r.parameter}": float(r.coverage68)
                for r in result["table"].itertuples()
                if r.model == "reference"
            }
        )
        metrics["time/comparison_s"] = result["summary"]["time/comparison_s"]
        run_id = log_analysis_run(
            metrics,
            out,
            args.experiment,
            args.tracking_uri or default_tracking_uri(),
            {
                "kind": "reference-comparison",
                "emulator": str(Path(args.emulator).resolve()),
                "flow": str(Path(args.flow).resolve()),
                "gaussian": str(Path(args.gaussian).resolve()),
            },
            "reference-comparison",
        )
        print(f"MLflow run {run_id} in experiment '{args.experiment}-analysis'")
    return 0


def emulator_check_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops emulator-check",
        description=doc_of("astrops.reference.emulator_check"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("emulator", help="emulator.pt written by python train.py experiment=emulator")
    ap.add_argument(
        "--store",
        required=True,
        help="a store holding a fixed-θ design (simulation.sampler=fixed)",
    )
    ap.add_argument(
        "--noise",
        default="data/noise/hera350_1000h",
        help="21CMMC noise tables z<z>.npz, or none (σ_noise = 0)",
    )
    ap.add_argument("--min-k", type=float, default=0.1)
    ap.add_argument("--max-k", type=float, default=1.0)
    ap.add_argument("--out", default="emulator_check")
    args = ap.parse_args(argv)
    from astrops.errors import StoreError
    from astrops.plotting import save_figures
    from astrops.reference import emulator_check

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out}: give a new or empty directory", file=sys.stderr)
        return 2
    try:
        rows = emulator_check.check(args.emulator, args.store, args.noise, args.min_k, args.max_k)
    except (ValueError, StoreError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if not rows:
        print(
            "error: no measured bin: check --noise, --min-k and --max-k against the emulator's "
            "k-range",
            file=sys.stderr,
        )
        return 2
    import pandas as pd

    from astrops.models.emulator import load_emulator

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "emulator_check.csv", index=False)
    text = emulator_check.summary(rows, load_emulator(args.emulator).param_names)
    (out / "emulator_check.md").write_text(text + "\n")
    save_figures({"emulator_check": emulator_check.figure(rows)}, out)
    print(text)
    return 0
