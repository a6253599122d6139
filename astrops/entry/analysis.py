"""Command lines of the after-the-fact analysis: ``python -m astrops compare | learning-curve |
plots | score``.

Parsing and refusals live here, in the entry layer; the work is done by :mod:`astrops.analysis`
and :mod:`astrops.evaluation`. Each ``*_main(argv)`` returns the exit status: 0 done, 2 bad input
(one line on stderr, before any work).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from astrops.entry.arguments import doc_of, held_out_parser

SCORE_DOC = """Score a trained model, once, on simulations it never saw.

    python -m astrops score MODEL --test-store DIR [--test-dataset NAME] [--json out.json]

MODEL is what ``train.py`` printed (a checkpoint or an ensemble directory). The test spectra go
through the data module the model was trained with — same redshifts, same observation (instrument
noise and k-range, one fixed realisation per spectrum from the training ``data.split_seed``) —
rebuilt from the plain values in the checkpoint's config, never from a ``_target_`` it names. The
training store is read only to rebuild that module (its path from the checkpoint, or ``--store``).
Prints R², and for probabilistic models the coverage of the 68 % / 95 % intervals, CRPS and
(Gaussian heads) NLL, per parameter; posterior summaries use 1 000 samples per spectrum drawn with
seed 0.
"""


def compare_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops compare", description=doc_of("astrops.analysis.compare")
    )
    ap.add_argument("experiment", nargs="?", default="astrops")
    ap.add_argument(
        "--filter", default="", help="MLflow search filter, e.g. \"tags.task = 'regression'\""
    )
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="default: $MLFLOW_TRACKING_URI, else the project's tracking/mlflow.db",
    )
    ap.add_argument("--out", default="comparison")
    ap.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    args = ap.parse_args(argv)
    from astrops.analysis import compare
    from astrops.tracking import default_tracking_uri

    try:
        compare.compare(
            args.experiment,
            args.tracking_uri or default_tracking_uri(),
            args.out,
            args.filter,
            log=not args.no_log,
        )
    except compare.CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def learning_curve_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops learning-curve",
        description=doc_of("astrops.analysis.learning_curve"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--experiment", required=True)
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="default: $MLFLOW_TRACKING_URI, else the project's tracking/mlflow.db",
    )
    ap.add_argument("--task", default="regression", help="task tag of the runs to use")
    ap.add_argument("--model", default=None, help="model tag of the runs to use (default: all)")
    ap.add_argument("--out", default="learning_curve.png")
    args = ap.parse_args(argv)
    from astrops.analysis import learning_curve
    from astrops.plotting import plt
    from astrops.tracking import default_tracking_uri

    try:
        groups = learning_curve.collect(
            args.tracking_uri or default_tracking_uri(),
            args.experiment,
            task=args.task,
            model=args.model,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not groups:
        print(
            f"error: experiment {args.experiment!r} has no finished runs with test R²",
            file=sys.stderr,
        )
        return 2
    print(learning_curve.table(groups))
    fig = learning_curve.figure(groups)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(args.out)
    return 0


def plots_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops plots", description=doc_of("astrops.analysis.plots")
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser(
        "spectra", help="spectra coloured by parameter, parameter and x_HI distributions"
    )
    sp.add_argument(
        "dataset",
        nargs="?",
        default=None,
        help="dataset name or hash prefix (default: the only one)",
    )
    sp.add_argument(
        "--store", default=None, help="store directory (default: the bundled data/reference)"
    )
    sp.add_argument("--redshift", type=float, default=8.0)
    sp.add_argument("--out", default="plots")
    sp.add_argument(
        "--mlflow",
        action="store_true",
        help="log the figures to MLflow (experiment astrops-analysis)",
    )
    args = ap.parse_args(argv)
    from astrops import tracking
    from astrops.analysis import plots
    from astrops.errors import StoreError

    try:
        paths = plots.plot_spectra(
            args.store or str(tracking.project_root() / "data" / "reference"),
            args.dataset,
            args.redshift,
            args.out,
        )
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths.values():
        print(p)
    if args.mlflow:
        import mlflow

        uri = tracking.default_tracking_uri()
        exp_id = tracking.prepare_experiment(
            uri, tracking.analysis_experiment("astrops"), tracking.default_artifact_root()
        )
        client = mlflow.MlflowClient(uri)
        run = client.create_run(
            exp_id, run_name=f"plots-{args.dataset or 'dataset'}", tags={"kind": "data_plots"}
        )
        for p in paths.values():
            client.log_artifact(run.info.run_id, str(p), "figures")
        client.set_terminated(run.info.run_id)
    return 0


def _held_out_command(
    args: argparse.Namespace, work: Callable[[], dict], show: Callable[[dict], str]
) -> int:
    """score and ood-check: refuse a bad ``--json`` path before any work, run ``work()`` (every
    refusal in it — checkpoint, data, observation, store — is a ValueError or a missing file: one
    line, exit 2), print ``show(results)``, write the JSON."""
    from astrops.errors import StoreError

    if args.json and (Path(args.json).is_dir() or not Path(args.json).absolute().parent.is_dir()):
        print(
            f"error: --json {args.json}: give a file path in an existing directory",
            file=sys.stderr,
        )
        return 2
    try:
        results = work()
    except (ValueError, StoreError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(show(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    return 0


def score_main(argv: list[str] | None = None) -> int:
    ap = held_out_parser("python -m astrops score", SCORE_DOC)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    from astrops import evaluation

    return _held_out_command(
        args,
        lambda: evaluation.score_model(args.model, args.test_store, args.test_dataset, args.store),
        lambda r: f"{int(r['n_test'])} test spectra from {args.test_store}\n{evaluation.table(r)}",
    )


def ood_check_main(argv: list[str] | None = None) -> int:
    ap = held_out_parser("python -m astrops ood-check", doc_of("astrops.analysis.ood_check"))
    ap.add_argument("--json", default=None, help="also write the rates here")
    args = ap.parse_args(argv)
    from astrops.analysis import ood_check

    return _held_out_command(
        args,
        lambda: ood_check.check(args.model, args.test_store, args.test_dataset, args.store),
        lambda r: f"OOD flag (p < {r['alpha']:g}) on {args.test_store}\n{ood_check.table(r)}",
    )
