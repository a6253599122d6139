"""How far a network posterior is from the reference: per-mock distances, the summary over mocks,
and corner plots overlaying the three posteriors.

References:
    Lin (1991), Divergence measures based on the Shannon entropy, IEEE Trans. Inf. Theory 37, 145.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_CORNERS = 6  # mocks drawn as corner overlays


def js_divergence(a: np.ndarray, b: np.ndarray, bins: int = 40) -> float:
    """Jensen–Shannon divergence (base 2, 0 … 1) of two 1-D sample sets on common bins."""
    from scipy.spatial.distance import jensenshannon

    lo, hi = (
        min(np.quantile(a, 0.001), np.quantile(b, 0.001)),
        max(np.quantile(a, 0.999), np.quantile(b, 0.999)),
    )
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)
    pa, pb = (np.histogram(np.clip(v, lo, hi), edges)[0] + 1e-12 for v in (a, b))
    return float(jensenshannon(pa, pb, base=2) ** 2)


def compare_one(ref: dict[str, np.ndarray], model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-parameter shift in reference σ, 68 % width ratio and 68 % overlap."""
    return {
        "shift": np.abs(model["mean"] - ref["mean"]) / ref["std"],
        "width_ratio": (model["hi68"] - model["lo68"]) / (ref["hi68"] - ref["lo68"]),
        "overlap68": (model["lo68"] <= ref["hi68"]) & (ref["lo68"] <= model["hi68"]),
    }


def summary_table(df) -> Any:
    """Per f, model and parameter: medians over mocks and coverage of the truths."""
    g = df.groupby(["f", "model", "parameter"], sort=False)
    return g.agg(
        median_abs_shift=("shift_in_ref_sigma", "median"),
        median_width_ratio=("width_ratio", "median"),
        overlap68=("overlap68", "mean"),
        median_js=("js", "median"),
        coverage68=("in68", "mean"),
        coverage95=("in95", "mean"),
        n=("mock", "count"),
    ).reset_index()


def markdown(table) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append(
            "| "
            + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values)
            + " |"
        )
    return "\n".join(lines)


def corner_overlays(ref_s, flow_s, gauss_s, truth, params, box) -> dict[str, Any]:
    import corner

    from astrops.parameters import LABELS

    figs = {}
    for i in range(min(N_CORNERS, len(truth))):
        both = np.concatenate([ref_s[i], flow_s[i], gauss_s[i]])
        rng = [
            (
                max(box[j][0], np.quantile(both[:, j], 0.002)),
                min(box[j][1], np.quantile(both[:, j], 0.998)),
            )
            for j in range(len(params))
        ]
        kw = {
            "range": rng,
            "bins": 30,
            "smooth": 1.0,
            "plot_datapoints": False,
            "plot_density": False,
            "levels": (0.68, 0.95),
        }
        fig = corner.corner(
            ref_s[i],
            color="k",
            labels=[LABELS.get(p, p) for p in params],
            truths=truth[i],
            truth_color="C2",
            hist_kwargs={"density": True, "color": "k"},
            **kw,
        )
        for s, color in ((flow_s[i], "C0"), (gauss_s[i], "C1")):
            corner.corner(
                s, fig=fig, color=color, hist_kwargs={"density": True, "color": color}, **kw
            )
        k = len(params)
        # each overlay resets the 1-D panels' height: fit the tallest of the three
        for j in range(k):
            ax = fig.axes[j * (k + 1)]
            top = max((p.get_path().vertices[:, 1].max() for p in ax.patches), default=1.0)
            ax.set_ylim(0, 1.1 * top)
        fig.suptitle(
            f"mock {i}: reference (black), flow ensemble (blue), Gaussian ensemble (orange)",
            y=1.02,
        )
        figs[f"corner_mock_{i}"] = fig
    return figs
