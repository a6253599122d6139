"""Learning curves from MLflow: test R² against the number of training simulations.

    python train.py -m data=reference_holdout data.train_size=250,500,1000,1801 seed=1,2,3 experiment_name=lc
    python -m astrops.learning_curve --experiment lc [--model dense] [--tracking-uri URI] [--out learning_curve.png]

Runs are grouped by redshifts (so z = 8 alone and several redshifts compare at equal numbers of
simulations) and by ``n_train``; each point is the mean ± std over the group's training seeds.
What more simulations would buy is the slope at the right end.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from astrops.report import LABELS, plt


def collect(tracking_uri: str, experiment: str, metric: str = "test/R2", task: str = "regression",
            model: str | None = None) -> dict:
    """{(redshifts, n_train): {parameter: [values over seeds]}} of the experiment's finished single
    network runs of one task (ensemble runs and baselines left out)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {tracking_uri}: run the train_size sweep first")
    groups: dict = defaultdict(lambda: defaultdict(list))
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=10_000):
        tags, metrics = run.data.tags, run.data.metrics
        if "n_train" not in tags or "ensemble_members" in tags or tags.get("baseline") or tags.get("task") != task:
            continue
        if model is not None and tags.get("model") != model:
            continue
        for key, value in metrics.items():
            if key.startswith(metric + "/") and not key.endswith("/overall"):
                groups[(tags.get("redshifts", "?"), int(tags["n_train"]))][key.split("/")[-1]].append(value)
    return groups


def table(groups: dict) -> str:
    params = sorted({p for g in groups.values() for p in g})
    lines = ["| redshifts | training sims | seeds | " + " | ".join(f"R² {p}" for p in params) + " |",
             "|---" * (len(params) + 3) + "|"]
    for (z, n), vals in sorted(groups.items()):
        cells = [f"{np.mean(vals[p]):.3f} ± {np.std(vals[p], ddof=1) if len(vals[p]) > 1 else 0:.3f}" for p in params]
        lines.append(f"| {z} | {n} | {len(vals[params[0]])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(groups: dict):
    params = sorted({p for g in groups.values() for p in g})
    fig, axes = plt.subplots(1, len(params), figsize=(4.3 * len(params), 3.8), squeeze=False)
    for z in sorted({z for z, _ in groups}):
        ns = sorted(n for zz, n in groups if zz == z)
        for ax, p in zip(axes[0], params, strict=True):
            mean = [np.mean(groups[(z, n)][p]) for n in ns]
            std = [np.std(groups[(z, n)][p]) for n in ns]
            ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label=f"z = {z}")
            ax.set_xscale("log")
            ax.set_xlabel("training simulations")
            ax.set_title(LABELS.get(p, p))
    ns_all = [n for _, n in groups]
    for ax in axes[0]:
        ax.set_xlim(min(ns_all) / 1.4, max(ns_all) * 1.4)
    axes[0][0].set_ylabel("test R²")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    root = Path(os.environ.get("ASTROPS_ROOT", Path(__file__).resolve().parents[1]))
    ap = argparse.ArgumentParser(prog="python -m astrops.learning_curve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/tracking/mlflow.db"))
    ap.add_argument("--task", default="regression", help="task tag of the runs to use")
    ap.add_argument("--model", default=None, help="model tag of the runs to use (default: all)")
    ap.add_argument("--out", default="learning_curve.png")
    args = ap.parse_args(argv)
    try:
        groups = collect(args.tracking_uri, args.experiment, task=args.task, model=args.model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not groups:
        print(f"error: experiment {args.experiment!r} has no finished runs with test R²", file=sys.stderr)
        return 2
    print(table(groups))
    figure(groups).savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
