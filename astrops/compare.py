"""Compare the runs of an MLflow experiment: ``python -m astrops.compare [experiment] [--filter ...]``.

Runs are grouped by configuration (model, task and command-line overrides, ignoring ``seed=`` and
``data.fold=``), so seed sweeps and k-fold runs become mean ± std rows; the seed study's published
numbers are added as reference rows. Writes a markdown and a CSV table and figures, and logs them to
MLflow as a comparison run. In the MLflow UI the same runs can be compared by ticking them and pressing
Compare.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from astrops.report import plt

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
METRICS = ["R2", "RMSE", "MAE", "MSE", "acc", "acc_pm1", "F1"]
# The seed study's published test results (its own, unknown data): Variable, RMSE, MAE, MSE, R2.
SEED_REFERENCE = {
    "seed study: dense regression (published)": {
        "R2": [0.7387, 0.8084, 0.5506], "RMSE": [29.1501, 0.2224, 2.9252], "MAE": [20.2648, 0.1667, 2.2491],
        "MSE": [849.7280, 0.0495, 8.5567]},
    "seed study: cnn regression (published)": {
        "R2": [0.7760, 0.8033, 0.5367], "RMSE": [26.9926, 0.2253, 2.9702], "MAE": [18.1964, 0.1768, 2.2209],
        "MSE": [728.5987, 0.0508, 8.8220]},
}
# overrides that do not change what is measured: seeds/folds (aggregated over), where things are written
_IGNORED = re.compile(r"^\+?(seed|data\.fold|ckpt_path|baseline|(hydra|logger|paths|tags)(\.[^=]*)?|callbacks\.progress_bar[^=]*)=")


def config_key(tags: dict[str, str]) -> str:
    overrides = [o for o in (tags.get("overrides") or "").split() if o != "(none)" and not _IGNORED.match(o)]
    base = f"{tags.get('model', '?')} {tags.get('task', '?')}"
    if "ensemble_members" in tags:  # an ensemble and its own members are different things to average
        base += f" ensemble of {tags['ensemble_members']}"
    elif "ensemble_member" in tags:
        base += " (ensemble member)"
    extra = [o for o in overrides if not o.startswith(("model=", "task="))]
    return base + (" " + " ".join(sorted(extra)) if extra else "")


def load_runs(experiment: str, tracking_uri: str, filter_string: str = "") -> pd.DataFrame:
    """One row per finished training run: config key, seed, train size and test metrics."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise SystemExit(f"error: no MLflow experiment '{experiment}' at {tracking_uri} (have: {names})")
    filt = "attributes.status = 'FINISHED'" + (f" and {filter_string}" if filter_string else "")
    rows = []
    for run in client.search_runs([exp.experiment_id], filter_string=filt, max_results=50_000):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        if tags.get("kind") in ("comparison", "optuna_summary") or "model" not in tags:
            continue
        row = {"run_id": run.info.run_id, "config": config_key(tags), "seed": params.get("seed"),
               "train_size": float(tags.get("n_train", "nan")), "sweep_id": tags.get("sweep_id", "")}
        for m in METRICS:
            for p in PARAMS:
                row[f"{m}/{p}"] = metrics.get(f"test/{m}/{p}", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """mean ± std over runs of each configuration, plus the seed study's reference rows."""
    cols = [c for c in runs.columns if "/" in c and runs[c].notna().any()]
    out = []
    for key, g in runs.groupby("config", sort=True):
        row = {"configuration": key, "runs": len(g)}
        for c in cols:
            v = g[c].dropna()
            row[c] = f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else (f"{v.mean():.4f}" if len(v) else "")
        out.append(row)
    for name, ref in SEED_REFERENCE.items():
        row = {"configuration": name, "runs": ""}
        for m, vals in ref.items():
            for p, v in zip(PARAMS, vals, strict=True):
                if f"{m}/{p}" in cols:
                    row[f"{m}/{p}"] = f"{v:.4f}"
        out.append(row)
    return pd.DataFrame(out).fillna("")


def markdown(df: pd.DataFrame) -> str:
    rows = [list(map(str, df.columns)), ["---"] * len(df.columns), *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def r2_figure(runs: pd.DataFrame):
    groups = sorted(runs["config"].unique())
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.5))
    width = 0.8 / len(PARAMS)
    x = np.arange(len(groups))
    for j, p in enumerate(PARAMS):
        stats = runs.groupby("config")[f"R2/{p}"].agg(["mean", "std"]).reindex(groups)
        ax.bar(x + j * width, stats["mean"], width, yerr=stats["std"].fillna(0), capsize=3, label=p)
    ax.set_xticks(x + width, groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test R²")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve_figure(runs: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 4))
    base = runs.assign(config=runs["config"].str.replace(r"\s*data\.train_size=\S+", "", regex=True))
    for key, g in base.groupby("config"):
        for p in PARAMS:
            stats = g.groupby("train_size")[f"R2/{p}"].agg(["mean", "std"])
            if len(stats) > 1:
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                            label=f"{key}: {p}")
    ax.set_xscale("log")
    ax.set_xlabel("training simulations")
    ax.set_ylabel("test R²")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compare(experiment: str, tracking_uri: str, out_dir: str, filter_string: str = "", log: bool = True) -> Path:
    runs = load_runs(experiment, tracking_uri, filter_string)
    if runs.empty:
        raise SystemExit(f"error: no finished training runs in experiment '{experiment}' match the filter")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(markdown(table) + "\n")
    runs.to_csv(out / "runs.csv", index=False)
    figures = {"r2_by_configuration": r2_figure(runs)}
    if runs["train_size"].nunique() > 1:
        figures["learning_curve"] = learning_curve_figure(runs)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=110)
    if log:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        exp_id = client.get_experiment_by_name(experiment).experiment_id
        run = client.create_run(exp_id, run_name="comparison", tags={"kind": "comparison", "filter": filter_string})
        for f in ("comparison.md", "comparison.csv", "runs.csv", *(f"{n}.png" for n in figures)):
            client.log_artifact(run.info.run_id, str(out / f))
        client.set_terminated(run.info.run_id)
    for fig in figures.values():
        plt.close(fig)
    print(markdown(table))
    return out / "comparison.md"


def main(argv: list[str] | None = None) -> int:
    root = Path(os.environ.get("ASTROPS_ROOT", Path(__file__).resolve().parents[1]))
    default_uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/tracking/mlflow.db")
    ap = argparse.ArgumentParser(prog="python -m astrops.compare", description=__doc__)
    ap.add_argument("experiment", nargs="?", default="astrops")
    ap.add_argument("--filter", default="", help="MLflow search filter, e.g. \"tags.task = 'regression'\"")
    ap.add_argument("--tracking-uri", default=default_uri)
    ap.add_argument("--out", default="comparison")
    ap.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    args = ap.parse_args(argv)
    compare(args.experiment, args.tracking_uri, args.out, args.filter, log=not args.no_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
