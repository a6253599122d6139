"""The calibration suite for any trained probabilistic model over any held-out store:

    python -m astrops diagnostics MODEL --test-store DIR [--out DIR] [--test-dataset NAME]
        [--store DIR] [--experiment NAME] [--tracking-uri URI] [--no-log]

MODEL is what ``train.py`` printed (a checkpoint or an ensemble directory) of a Gaussian head, a
flow, or an ensemble of either (the models ``predict.py samples=`` samples; a regression
ensemble's spread is not an error bar and is refused by both).
The test spectra go through the data module the model was trained with (same redshifts, observation
and noise realisation as ``python -m astrops score``); posteriors are 1 000 samples per
spectrum drawn with seed 0. Writes to ``--out`` (default ``diagnostics``) the metrics table,
``metrics.json``, ``coverage_curve.json``, ``calibration.json``, ``coverage.md`` and the figures
(coverage curve, SBC, TARP, six corner plots), and logs them as a ``calibration`` run in the MLflow
experiment ``<experiment>-analysis`` (default: the model's training experiment).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from astrops.entry.arguments import held_out_parser


def diagnose(
    model_path: str | Path,
    test_store: str | Path,
    out_dir: str | Path,
    test_dataset: str | None = None,
    store: str | Path | None = None,
) -> tuple[dict[str, float], Any]:
    """Every metric (``test/...``: R², coverage, CRPS, SBC p-values, TARP ATC) and the predictor;
    the files and figures are in ``out_dir``. Raises ValueError for a model without a predictive
    distribution."""
    from astrops.analysis.run_report import report_results
    from astrops.evaluation import scored_test
    from astrops.inference import load_model
    from astrops.scores import decoded_outputs

    model = load_model(model_path).model
    if not model.has_distribution:  # before the data are read
        raise ValueError(
            f"{model_path}: this {model.task.kind} model has no predictive distribution to "
            "calibrate (a regression ensemble's spread is not an error bar): give a model "
            "trained with task=gaussian or task=flow, or an ensemble of them"
        )
    predictor, dm, dec, y, results = scored_test(model_path, test_store, test_dataset, store)
    columns = predictor.model.task.table_columns
    results.update(report_results(dm, columns, results, decoded_outputs(dec, y), Path(out_dir)))
    (Path(out_dir) / "metrics.json").write_text(
        json.dumps(dict(sorted(results.items())), indent=1) + "\n"
    )
    return results, predictor


def diagnostics_main(argv: list[str] | None = None) -> int:
    ap = held_out_parser("python -m astrops diagnostics", __doc__)
    ap.add_argument("--out", default="diagnostics", help="directory for the files and figures")
    ap.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: the model's own)"
    )
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="default: $MLFLOW_TRACKING_URI, else tracking/mlflow.db",
    )
    ap.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    args = ap.parse_args(argv)
    from astrops.errors import StoreError

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(
            f"error: --out {out}: give a new or empty directory (files of an earlier run would "
            "mix with these)",
            file=sys.stderr,
        )
        return 2
    # every refusal (checkpoint, data, observation, store, model kind) is a ValueError or a missing
    # file
    try:
        out.mkdir(parents=True, exist_ok=True)
        results, predictor = diagnose(
            args.model, args.test_store, out, args.test_dataset, args.store
        )
    except (ValueError, StoreError, FileNotFoundError) as exc:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{int(results['n_test'])} test spectra from {args.test_store}")
    from astrops.evaluation import table

    print(table(results))
    sbc = ", ".join(
        f"{k.split('/')[-1]} {v:.3g}" for k, v in results.items() if k.startswith("test/sbc_p/")
    )
    print(f"SBC uniformity p: {sbc}; TARP ATC {results['test/tarp_atc']:.2f}; files in {out}")
    if not args.no_log:
        from astrops.tracking import default_tracking_uri
        from astrops.tracking.analysis_run import log_analysis_run

        experiment = (
            args.experiment
            or (predictor.meta.get("config") or {}).get("experiment_name")
            or "astrops"
        )
        run_id = log_analysis_run(
            results,
            out,
            experiment,
            args.tracking_uri or default_tracking_uri(),
            {
                "kind": "calibration",
                "model": str(Path(args.model).resolve()),
                "test_store": str(Path(args.test_store).resolve()),
            },
            "calibration",
        )
        print(f"MLflow run {run_id} in experiment '{experiment}-analysis'")
    return 0
