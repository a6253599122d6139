"""Learning curves from MLflow: test R² against the number of training simulations.

    python train.py -m data=reference_holdout data.train_size=250,500,1000,1801 seed=1,2,3
    experiment_name=lc python -m astrops learning-curve --experiment lc [--model dense]
    [--tracking-uri URI] [--out learning_curve.png]

Runs are grouped by redshifts (so z = 8 alone and several redshifts compare at equal numbers of
simulations) and by ``n_train``; each point is the mean ± std over the group's training seeds.
What more simulations would buy is the slope at the right end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from astrops.parameters import LABELS, ordered
from astrops.plotting import plt

# {(series, n_train): {parameter: [values over runs]}}; a series is one curve (redshifts, a
# configuration)
Groups = dict[tuple[str, int], dict[str, list[float]]]


def group_runs(
    runs: Iterable[Any], series: Callable[[dict[str, str]], str], metric: str = "test/R2"
) -> Groups:
    """Group MLflow runs into learning-curve points: ``series(tags)`` names the curve a run belongs
    to, its ``n_train`` tag the point, and each ``<metric>/<parameter>`` metric joins that point's
    values.

    The one grouping behind both ``python -m astrops learning-curve`` (a curve per
    redshift set) and the comparison's learning-curve figure (a curve per configuration). Runs
    without ``n_train`` (not training runs) are left out; parameter names come from the metric
    keys.
    """
    groups: Groups = defaultdict(lambda: defaultdict(list))
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if "n_train" not in tags:
            continue
        for key, value in metrics.items():
            if key.startswith(metric + "/") and not key.endswith("/overall"):
                groups[(series(tags), int(tags["n_train"]))][key.split("/")[-1]].append(value)
    return groups


def collect(
    tracking_uri: str,
    experiment: str,
    metric: str = "test/R2",
    task: str = "regression",
    model: str | None = None,
) -> Groups:
    """{(redshifts, n_train): {parameter: [values over seeds]}} of the experiment's finished single
    network runs of one task (ensemble runs and baselines left out)."""
    from astrops.errors import TrackingError
    from astrops.tracking import existing_experiment

    try:
        client, exp = existing_experiment(
            tracking_uri, experiment, "run the train_size sweep first"
        )
    except TrackingError as exc:
        raise ValueError(str(exc)) from None

    def wanted(tags: dict[str, str]) -> bool:
        return (
            "ensemble_members" not in tags
            and not tags.get("baseline")
            and tags.get("task") == task
            and (model is None or tags.get("model") == model)
        )

    runs = client.search_runs(
        [exp.experiment_id], "attributes.status = 'FINISHED'", max_results=10_000
    )
    return group_runs(
        (r for r in runs if wanted(r.data.tags)), lambda tags: tags.get("redshifts", "?"), metric
    )


def table(groups: Groups) -> str:
    """Markdown: a row per (redshifts, training size), mean ± std (over seeds) of R² per
    parameter."""
    params = ordered(p for g in groups.values() for p in g)
    lines = [
        "| redshifts | training sims | seeds | " + " | ".join(f"R² {p}" for p in params) + " |",
        "|---" * (len(params) + 3) + "|",
    ]
    for (z, n), vals in sorted(groups.items()):
        cells = [
            f"{np.mean(vals[p]):.3f} ± {np.std(vals[p], ddof=1) if len(vals[p]) > 1 else 0:.3f}"
            for p in params
        ]
        lines.append(f"| {z} | {n} | {len(vals[params[0]])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(groups: Groups, label: Callable[[str], str] = lambda z: f"z = {z}") -> Figure:
    """A panel per parameter, a curve per series (``label(series)`` in the legend), log training
    size."""
    params = ordered(p for g in groups.values() for p in g)
    fig, axes = plt.subplots(1, len(params), figsize=(4.3 * len(params), 3.8), squeeze=False)
    for z in sorted({z for z, _ in groups}):
        ns = sorted(n for zz, n in groups if zz == z)
        for ax, p in zip(axes[0], params, strict=True):
            mean = [np.mean(groups[(z, n)][p]) for n in ns]
            std = [np.std(groups[(z, n)][p]) for n in ns]
            ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label=label(z))
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
