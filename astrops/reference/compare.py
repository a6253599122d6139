"""Network posteriors against the likelihood-based reference on mock observations:

    python -m astrops reference --emulator EMU --flow FLOW_ENSEMBLE \
        --gaussian GAUSSIAN_ENSEMBLE --test-store data/holdout [--store data/reference] \
        [--n-mocks 100] [--model-errors 0 0.15] [--covariance fixed|theta] [--out DIR] \
        [--experiment NAME] \
        [--tracking-uri URI] [--no-log]

A mock is a held-out simulation with one fixed realisation of the instrument's noise — exactly the
test spectrum the networks are scored on (the flow's data module builds them; both networks must
share its redshifts, k-bins and noise). The reference posterior of each mock is the emulator inside
21CMMC's Gaussian likelihood (:mod:`astrops.reference.likelihood`: σ_noise² + (f·Δ²)² + the
emulator's error + the cosmic variance correlated across redshifts and k-bins; ``--covariance
fixed`` holds it at a point estimate, ``theta`` re-evaluates it with its log-determinant) under the
training priors, on a grid refined by mass (:mod:`astrops.reference.grid`), for each f of
``--model-errors`` (0: the networks saw thermal noise only; 0.15: 21CMMC's default). A mock whose
grid did not resolve is listed in ``summary.json`` and left out of every summary. Per mock and
parameter: means, 68/95 % intervals,
|mean shift| in reference σ, 68 % width ratio, overlap of the 68 % intervals, Jensen–Shannon
divergence of the 1-D marginals; summaries over mocks with every posterior's coverage of the
truths; corner plots of six mocks overlaying reference (black), flow ensemble (blue) and Gaussian
ensemble (orange). Logged as one ``reference-comparison`` run in ``<experiment>-analysis``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrops.reference.agreement import (
    compare_one,
    corner_overlays,
    js_divergence,
    markdown,
    summary_table,
)
from astrops.reference.solver import COVARIANCE
from astrops.scores import QUANTILE_LEVELS

MODEL_ERRORS = (0.0, 0.15)
LEVELS = {k: q for k, q in QUANTILE_LEVELS.items() if k != "median"}  # the 68 / 95 % interval ends


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
    from astrops.evaluation import held_out

    _, dm = held_out(flow, test_store, None, store)
    x, y = dm.tensors["test"]
    return dm, x[:n], y[:n]


def reference_posteriors(
    emu, dm, x: torch.Tensor, f: float, workers: int = 1, covariance: str = COVARIANCE
) -> tuple[list[dict], list[np.ndarray]]:
    """Per mock: the reference summary and its samples (:mod:`astrops.reference.solver`)."""
    from astrops.reference.solver import ReferenceSetup
    from astrops.reference.solver import reference_posteriors as solve

    emu_bins = emu.bins.tolist()
    setup = ReferenceSetup(
        emu,
        [emu_bins.index(int(b)) for b in dm.kept_bins],  # covered: check_inputs
        torch.as_tensor(dm.sigma[:, dm.kept_bins], dtype=torch.float64),
        np.asarray(dm.ranges, dtype=np.float64),
        model_error=f,
        covariance=covariance,
    )
    results = solve(setup, x[:, :, dm.kept_bins].double(), workers=workers)
    return [r[0] for r in results], [r[1] for r in results]


def network_posteriors(
    flow_pred, gauss_pred, x: torch.Tensor
) -> tuple[list[dict], list[np.ndarray], list[dict], list[np.ndarray]]:
    """Summaries and samples of the flow ensemble (its own samples) and the Gaussian ensemble
    (exact intervals of its mean ± σ; 1 000 draws for the JS histograms and plots, seed 0)."""
    from scipy.stats import norm

    from astrops.evaluation import predict_test

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
    model_errors: tuple[float, ...] = MODEL_ERRORS,
    covariance: str | None = None,
) -> dict[str, Any]:
    import pandas as pd

    from astrops.inference import load_model
    from astrops.models.emulator import load_emulator

    t0 = time.perf_counter()
    covariance = covariance or COVARIANCE
    emu = load_emulator(emulator)
    flow_pred, gauss_pred = load_model(flow), load_model(gaussian)
    check_inputs(emu, flow_pred, gauss_pred, flow)
    dm, x, y = mocks(flow, test_store, store, n)
    params, truth = list(dm.parameters), y.numpy().astype(np.float64)
    flow_sum, flow_s, gauss_sum, gauss_s = network_posteriors(flow_pred, gauss_pred, x)
    rows, summary, figures = [], {"n_mocks": len(truth), "parameters": params}, {}
    for f in model_errors:
        ref_sum, ref_s = reference_posteriors(emu, dm, x, f, workers, covariance)
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
        if f == model_errors[0]:
            figures = corner_overlays(ref_s, flow_s, gauss_s, truth, params, dm.ranges)
    df = pd.DataFrame(rows)
    df["in68"] = (df["true"] >= df["lo68"]) & (df["true"] <= df["hi68"])
    df["in95"] = (df["true"] >= df["lo95"]) & (df["true"] <= df["hi95"])
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "per_mock.csv", index=False)
    # a mock whose reference grid did not resolve is counted, never averaged in
    unresolved = set(df.loc[~df["grid_resolved"], "mock"])
    table = summary_table(df[~df["mock"].isin(unresolved)])
    table.to_csv(out / "comparison.csv", index=False)
    summary["unresolved_mocks"] = sorted(int(i) for i in unresolved)
    summary["covariance"] = covariance
    summary["time/comparison_s"] = time.perf_counter() - t0
    (out / "comparison.md").write_text(markdown(table) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    from astrops.plotting import save_figures

    save_figures(figures, out)
    return {"table": table, "summary": summary}
