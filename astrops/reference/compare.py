"""Network posteriors against the likelihood-based reference on mock observations:

    python -m astrops.reference.compare --emulator EMU --flow FLOW_ENSEMBLE --gaussian
    GAUSSIAN_ENSEMBLE
        --test-store data/holdout [--store data/reference] [--n-mocks 100] [--out
        reference_comparison] [--experiment NAME] [--tracking-uri URI] [--no-log]

A mock is a held-out simulation with one fixed realisation of the instrument's noise — exactly the
test spectrum the networks are scored on (the flow's data module builds them; both networks must
share its redshifts, k-bins and noise). The reference posterior of each mock is the emulator inside
21CMMC's Gaussian likelihood (:mod:`astrops.reference.likelihood`: σ_noise² + (f·Δ²)² + the cosmic
variance correlated across redshifts and k-bins, log-determinant kept)
under the training priors, on a refined grid (:mod:`astrops.reference.grid`), for f = 0 (the
networks saw thermal noise only) and f = 0.15 (21CMMC's default). Per mock and parameter: means,
68/95 % intervals,
|mean shift| in reference σ, 68 % width ratio, overlap of the 68 % intervals, Jensen–Shannon
divergence of the 1-D marginals; summaries over mocks with every posterior's coverage of the
truths; corner plots of six mocks overlaying reference (black), flow ensemble (blue) and Gaussian
ensemble (orange). Logged as one ``reference-comparison`` run in ``<experiment>-analysis``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrops.models.tasks import QUANTILE_LEVELS

MODEL_ERRORS = (0.0, 0.15)
LEVELS = {k: q for k, q in QUANTILE_LEVELS.items() if k != "median"}  # the 68 / 95 % interval ends
REF_DRAWS = 4000  # reference samples per mock for the JS histograms and corner plots
N_CORNERS = 6


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


def check_inputs(emu, flow_pred, gauss_pred, flow: str) -> None:
    """Every refusal before any work: model kinds, one observation, the emulator covering it."""
    for pred, want, name in ((flow_pred, True, "--flow"), (gauss_pred, False, "--gaussian")):
        opts = pred.model.task.metric_options()
        if (
            not getattr(pred.model.task, "probabilistic", False)
            or (opts.get("distribution") == "samples") != want
        ):
            kind = (
                "a flow (task=flow) or flow ensemble"
                if want
                else "a Gaussian head (task=gaussian) or its ensemble"
            )
            raise ValueError(f"{name} is a {pred.model.task.kind} model: give {kind}")
    for key in ("redshifts", "k", "kept_bins", "noise_sigma"):
        if flow_pred.meta.get(key) != gauss_pred.meta.get(key):
            raise ValueError(
                f"the flow and the Gaussian ensemble differ in {key}: compare models of one "
                "observation"
            )
    if flow_pred.meta.get("noise_sigma") is None:
        raise ValueError(
            f"{flow} was trained without an observation: the reference needs the instrument's "
            "noise"
        )
    meta = flow_pred.meta
    if list(flow_pred.parameters) != list(gauss_pred.parameters) or list(emu.param_names) != list(
        flow_pred.parameters
    ):
        raise ValueError(
            f"parameters differ (emulator {emu.param_names}, flow {flow_pred.parameters}, "
            "Gaussian "
            f"{gauss_pred.parameters}): compare models of the same parameters in the same order"
        )
    if (
        list(emu.redshifts) != list(meta["redshifts"])
        or len(emu.k) != len(meta["k"])
        or not np.allclose(emu.k, meta["k"])
    ):
        raise ValueError(
            "the emulator's redshifts or k-bins are not the models': train it on their store and "
            "redshifts "
            "(python train.py experiment=emulator data.redshifts=[...])"
        )
    missing = sorted(set(int(b) for b in meta["kept_bins"]) - set(emu.bins.tolist()))
    if missing:
        raise ValueError(f"the emulator does not cover k-bins {missing} the observation measures")
    box = emu.box.numpy()
    for j, p in enumerate(flow_pred.parameters):
        lo, hi = flow_pred.prior_box[p]
        if lo < box[j, 0] - 1e-6 or hi > box[j, 1] + 1e-6:
            raise ValueError(
                f"the emulator's {p} range {box[j].tolist()} does not cover the models' prior "
                f"[{lo}, {hi}]"
            )


def mocks(flow: str, test_store: str, store: str | None, n: int):
    """The flow's held-out data module and its first ``n`` test spectra (mocks) with their
    truths."""
    from astrops.analysis.score import held_out

    _, dm = held_out(flow, test_store, None, store)
    x, y = dm.tensors["test"]
    return dm, x[:n], y[:n]


_WORK: dict[str, Any] = {}  # what the reference workers share (set before they fork)


def reference_posteriors(
    emu, dm, x: torch.Tensor, f: float, workers: int = 1, seed: int = 0
) -> tuple[list[dict], list[np.ndarray]]:
    """Per mock: the reference summary and ``REF_DRAWS`` samples, over ``workers`` processes."""
    emu_bins = emu.bins.tolist()
    pos = [emu_bins.index(int(b)) for b in dm.kept_bins]  # covered: check_inputs
    # measured (z, k) in emu.corr
    flat = [i * len(emu_bins) + p for i in range(len(emu.redshifts)) for p in pos]
    _WORK.clear()
    _WORK.update(
        emu=emu,
        pos=pos,
        corr=emu.corr[flat][:, flat].double(),
        f=f,
        seed=seed,
        box=dm.ranges,
        noise=torch.as_tensor(dm.sigma[:, dm.kept_bins], dtype=torch.float64),
        data=x[:, :, dm.kept_bins].double(),
    )
    from astrops.reference.grid import N_CELLS, _evaluate

    # every mock's first grid is the prior box's: emulated once, shared
    _WORK["stage0"] = (None, None)
    _evaluate(_cache_stage0, dm.ranges[:, 0], dm.ranges[:, 1], N_CELLS)
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(_posterior_of, range(len(x)))
    else:
        results = [_posterior_of(i) for i in range(len(x))]
    return [r[0] for r in results], [r[1] for r in results]


def _cache_stage0(theta: np.ndarray) -> np.ndarray:
    _WORK["stage0"] = (theta.copy(), _emulate(theta))
    return np.zeros(len(theta))


def _emulate(theta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    cached, out = _WORK["stage0"]
    if cached is not None and cached.shape == theta.shape and np.array_equal(cached, theta):
        return out
    with torch.no_grad():
        mean, var = _WORK["emu"](torch.as_tensor(theta, dtype=torch.float32))
    return mean[:, :, _WORK["pos"]].double(), var[:, :, _WORK["pos"]].double()


def _posterior_of(i: int) -> tuple[dict, np.ndarray]:
    from astrops.reference.grid import grid_posterior
    from astrops.reference.likelihood import PowerSpectrumLikelihood

    torch.set_num_threads(1)
    w = _WORK
    lik = PowerSpectrumLikelihood(w["data"][i], w["noise"], w["f"], corr=w["corr"])
    post = grid_posterior(lambda theta: lik(*_emulate(theta)).numpy(), w["box"])
    q = post.quantile(list(LEVELS.values()))
    summary = {
        "mean": post.mean(),
        "std": post.std(),
        **{k: q[j] for j, k in enumerate(LEVELS)},
        "resolved": post.resolved,
    }
    return summary, post.sample(REF_DRAWS, np.random.default_rng([w["seed"], i]))


def network_posteriors(
    flow_pred, gauss_pred, x: torch.Tensor
) -> tuple[list[dict], list[np.ndarray], list[dict], list[np.ndarray]]:
    """Summaries and samples of the flow ensemble (its own samples) and the Gaussian ensemble
    (exact intervals of its mean ± σ; 1 000 draws for the JS histograms and plots, seed 0)."""
    from scipy.stats import norm

    from astrops.analysis.score import predict_test

    f = {k: v.numpy().astype(np.float64) for k, v in predict_test(flow_pred.model, x).items()}
    flow = [
        {"mean": f["value"][i], "std": f["std"][i], **{k: f[k][i] for k in LEVELS}}
        for i in range(len(x))
    ]
    g = predict_test(gauss_pred.model, x)
    mu, sd = g["value"].numpy().astype(np.float64), g["std"].numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    gauss = [
        {
            "mean": mu[i],
            "std": sd[i],
            **{k: mu[i] + sd[i] * norm.ppf(q) for k, q in LEVELS.items()},
        }
        for i in range(len(mu))
    ]
    gauss_s = [mu[i] + sd[i] * rng.standard_normal((1000, mu.shape[1])) for i in range(len(mu))]
    return flow, list(f["samples"]), gauss, gauss_s


def run_comparison(
    emulator: str,
    flow: str,
    gaussian: str,
    test_store: str,
    store: str | None,
    n: int,
    out: Path,
    workers: int = 1,
) -> dict[str, Any]:
    import pandas as pd

    from astrops.inference import load_model
    from astrops.models.emulator import load_emulator

    t0 = time.perf_counter()
    emu = load_emulator(emulator)
    flow_pred, gauss_pred = load_model(flow), load_model(gaussian)
    check_inputs(emu, flow_pred, gauss_pred, flow)
    dm, x, y = mocks(flow, test_store, store, n)
    params, truth = list(dm.parameters), y.numpy().astype(np.float64)
    flow_sum, flow_s, gauss_sum, gauss_s = network_posteriors(flow_pred, gauss_pred, x)
    rows, summary, figures = [], {"n_mocks": len(truth), "parameters": params}, {}
    for f in MODEL_ERRORS:
        ref_sum, ref_s = reference_posteriors(emu, dm, x, f, workers)
        for i in range(len(truth)):
            for name, model, samples in (
                ("flow", flow_sum[i], flow_s[i]),
                ("gaussian", gauss_sum[i], gauss_s[i]),
                ("reference", ref_sum[i], None),
            ):
                cmp = compare_one(ref_sum[i], model)
                for j, p in enumerate(params):
                    rows.append(
                        {
                            "f": f,
                            "mock": i,
                            "model": name,
                            "parameter": p,
                            "true": truth[i, j],
                            **{k: float(model[k][j]) for k in ("mean", "std", *LEVELS)},
                            "shift_in_ref_sigma": float(cmp["shift"][j]),
                            "width_ratio": float(cmp["width_ratio"][j]),
                            "overlap68": bool(cmp["overlap68"][j]),
                            "js": js_divergence(ref_s[i][:, j], samples[:, j])
                            if samples is not None
                            # the JS floor of the draws
                            else js_divergence(ref_s[i][:1000, j], ref_s[i][1000:, j]),
                            "grid_resolved": bool(ref_sum[i]["resolved"]),
                        }
                    )
        if f == 0.0:
            figures = corner_overlays(ref_s, flow_s, gauss_s, truth, params, dm.ranges)
    df = pd.DataFrame(rows)
    df["in68"] = (df["true"] >= df["lo68"]) & (df["true"] <= df["hi68"])
    df["in95"] = (df["true"] >= df["lo95"]) & (df["true"] <= df["hi95"])
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "per_mock.csv", index=False)
    table = summary_table(df)
    table.to_csv(out / "comparison.csv", index=False)
    summary["grid_resolved"] = float(df[df.model == "reference"]["grid_resolved"].mean())
    summary["time/comparison_s"] = time.perf_counter() - t0
    (out / "comparison.md").write_text(markdown(table) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    from astrops.analysis.figures import save_figures

    save_figures(figures, out)
    return {"table": table, "summary": summary}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops.reference.compare",
        description=__doc__,
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
    ap.add_argument("--out", default="reference_comparison")
    ap.add_argument("--experiment", default="astrops")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--no-log", action="store_true")
    args = ap.parse_args(argv)
    from astrops.store import StoreError

    out = Path(args.out)
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
        result = run_comparison(
            args.emulator,
            args.flow,
            args.gaussian,
            args.test_store,
            args.store,
            args.n_mocks,
            out,
            args.workers,
        )
    except (ValueError, StoreError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(markdown(result["table"]))
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


if __name__ == "__main__":
    sys.exit(main())
