"""Network posteriors against the likelihood-based reference on mock observations:

    python -m astrops reference --emulator EMU --flow FLOW_ENSEMBLE \
        --gaussian GAUSSIAN_ENSEMBLE --test-store data/holdout [--store data/reference] \
        [--n-mocks 100] [--out reference_comparison] [--experiment NAME] \
        [--tracking-uri URI] [--no-log]

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
from astrops.scores import QUANTILE_LEVELS

MODEL_ERRORS = (0.0, 0.15)
LEVELS = {k: q for k, q in QUANTILE_LEVELS.items() if k != "median"}  # the 68 / 95 % interval ends
REF_DRAWS = 4000  # reference samples per mock for the JS histograms and corner plots


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
    from astrops.plotting import save_figures

    save_figures(figures, out)
    return {"table": table, "summary": summary}
