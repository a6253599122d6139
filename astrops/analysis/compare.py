"""Compare the runs of an MLflow experiment: ``python -m astrops compare [experiment]
[--filter ...]``.

Runs are grouped by configuration (model, task and command-line overrides, ignoring ``seed=`` and
``data.fold=``), so seed sweeps and k-fold runs become mean ± std rows; the seed study's published
numbers are added as reference rows. Writes a markdown and a CSV table and figures, and logs them
to MLflow as a comparison run in experiment ``<experiment>-analysis`` (apart from the training
runs). In the MLflow UI the same runs can be compared by ticking them and pressing Compare.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from astrops.analysis import learning_curve
from astrops.errors import CompareError
from astrops.parameters import NAMES, ordered
from astrops.plotting import plt, save_figures

METRICS = ["R2", "RMSE", "MAE", "MSE", "acc", "acc_pm1", "F1"]
# package data beside this module: numbers are data, not code (and are cited, so they must not
# drift)
PUBLISHED = "seed_study_published.json"
# overrides that do not change what is measured: seeds/folds (aggregated over), where things are
# written
_IGNORED = re.compile(
    r"^\+?(seed|data\.fold|ckpt_path|baseline|(hydra|logger|paths|tags)(\.[^=]*)?|callbacks\.progress_bar[^=]*)="
)
_TRAIN_SIZE = re.compile(r"\s*data\.train_size=\S+")


def config_key(tags: dict[str, str]) -> str:
    """What a run measured, as one string: runs that differ only in seed, fold or output paths
    share it."""
    overrides = [
        o for o in (tags.get("overrides") or "").split() if o != "(none)" and not _IGNORED.match(o)
    ]
    base = f"{tags.get('model', '?')} {tags.get('task', '?')}"
    # an ensemble and its own members are different things to average
    if "ensemble_members" in tags:
        base += f" ensemble of {tags['ensemble_members']}"
    elif "ensemble_member" in tags:
        base += " (ensemble member)"
    extra = [o for o in overrides if not o.startswith(("model=", "task="))]
    return base + (" " + " ".join(sorted(extra)) if extra else "")


def published_reference() -> dict[str, dict[str, dict[str, float]]]:
    """The seed study's published test results, {row name: {metric: {parameter: value}}}."""
    return json.loads(resources.files("astrops.analysis").joinpath(PUBLISHED).read_text())["rows"]


def load_runs(experiment: str, tracking_uri: str, filter_string: str = "") -> list[Any]:
    """The experiment's finished training runs (MLflow ``Run`` objects; comparison and Optuna
    summary runs, and runs without a ``model`` tag, left out)."""
    from astrops.errors import TrackingError
    from astrops.tracking import existing_experiment

    try:
        client, exp = existing_experiment(
            tracking_uri, experiment, "name the experiment the runs were logged to"
        )
    except TrackingError as exc:
        raise CompareError(str(exc)) from None
    filt = "attributes.status = 'FINISHED'" + (f" and {filter_string}" if filter_string else "")
    return [
        run
        for run in client.search_runs([exp.experiment_id], filter_string=filt, max_results=50_000)
        if run.data.tags.get("kind") not in ("comparison", "optuna_summary")
        and "model" in run.data.tags
    ]


def runs_table(runs: list[Any]) -> pd.DataFrame:
    """One row per run: config key, seed, train size and test metrics (``<metric>/<parameter>``),
    with the parameters those runs were tested on (their ``test/R2/<parameter>`` metrics; the three
    reionization parameters when none has test metrics, as empty columns)."""
    params = ordered(
        key.split("/")[-1]
        for run in runs
        for key in run.data.metrics
        if key.startswith("test/R2/") and not key.endswith("/overall")
    ) or list(NAMES)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        row = {
            "run_id": run.info.run_id,
            "config": config_key(tags),
            "seed": run.data.params.get("seed"),
            "train_size": float(tags.get("n_train", "nan")),
            "sweep_id": tags.get("sweep_id", ""),
        }
        for m in METRICS:
            for p in params:
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
            row[c] = (
                f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"
                if len(v) > 1
                else (f"{v.mean():.4f}" if len(v) else "")
            )
        out.append(row)
    for name, ref in published_reference().items():
        row = {"configuration": name, "runs": ""}
        for m, by_parameter in ref.items():
            for p, v in by_parameter.items():
                if f"{m}/{p}" in cols:
                    row[f"{m}/{p}"] = f"{v:.4f}"
        out.append(row)
    return pd.DataFrame(out).fillna("")


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (no tabulate dependency)."""
    rows = [list(map(str, df.columns)), ["---"] * len(df.columns), *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def r2_figure(runs: pd.DataFrame) -> Figure:
    """Test R² per configuration (mean ± std over its runs), a bar per parameter."""
    params = [c.split("/", 1)[1] for c in runs.columns if c.startswith("R2/")]
    groups = sorted(runs["config"].unique())
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.5))
    width = 0.8 / len(params)
    x = np.arange(len(groups))
    for j, p in enumerate(params):
        stats = runs.groupby("config")[f"R2/{p}"].agg(["mean", "std"]).reindex(groups)
        ax.bar(
            x + j * width, stats["mean"], width, yerr=stats["std"].fillna(0), capsize=3, label=p
        )
    ax.set_xticks(x + width, groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test R²")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve_groups(runs: list[Any]) -> learning_curve.Groups:
    """Learning-curve points with a curve per configuration (its ``data.train_size`` left out of
    the key), keeping the configurations trained at more than one size."""
    groups = learning_curve.group_runs(runs, lambda tags: _TRAIN_SIZE.sub("", config_key(tags)))
    sizes = Counter(series for series, _ in groups)
    return {key: values for key, values in groups.items() if sizes[key[0]] > 1}


def compare(
    experiment: str, tracking_uri: str, out_dir: str, filter_string: str = "", log: bool = True
) -> Path:
    """Write comparison.md/.csv, runs.csv and figures to ``out_dir`` (and log them as a comparison
    run); returns the markdown table's path. Raises :class:`CompareError` when no run matches."""
    mlflow_runs = load_runs(experiment, tracking_uri, filter_string)
    if not mlflow_runs:
        raise CompareError(
            f"no finished training runs in experiment '{experiment}' match the filter"
        )
    runs = runs_table(mlflow_runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(markdown(table) + "\n")
    runs.to_csv(out / "runs.csv", index=False)
    figures = {"r2_by_configuration": r2_figure(runs)}
    curves = learning_curve_groups(mlflow_runs)
    if curves:
        figures["learning_curve"] = learning_curve.figure(curves, label=str)
    pngs = save_figures(figures, out)
    if log:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        from astrops.tracking import analysis_experiment, prepare_experiment

        exp_id = prepare_experiment(tracking_uri, analysis_experiment(experiment))
        run = client.create_run(
            exp_id, run_name="comparison", tags={"kind": "comparison", "filter": filter_string}
        )
        for path in (
            out / "comparison.md",
            out / "comparison.csv",
            out / "runs.csv",
            *pngs.values(),
        ):
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id)
    print(markdown(table))
    return out / "comparison.md"
