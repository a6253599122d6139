"""Which recalibration makes a trained ensemble's posteriors calibrated: every candidate refitted
from the same trained members and scored once on a test store no choice was made on.

    .venv/bin/python scripts/posterior_ablation.py LABEL=ENSEMBLE_DIR [LABEL=DIR ...] \\
        --test-store data/calib_test --store data/reference [--out posterior_ablation]

Rows per flow ensemble: ``raw`` (no recalibration), ``quantile_map`` (the legacy 41-knot PIT maps:
each member's and the mixture's, fitted on the validation split), ``base/val`` (one location and
scale of the flow's base noise, fitted by likelihood on the validation split) and ``base/val×obs``
(the same on the validation spectra with fresh noise draws, what training does now). Per Gaussian
ensemble: ``raw``, ``var_scale/val`` and ``var_scale/val×obs``. Each row: per parameter the SBC
χ² p-value (median and range over 3 posterior-sampling seeds, 1 000 samples per spectrum) and
whether its ECDF stays inside the simultaneous 95 % band (Säilynoja et al. 2022; seed 0), the
coverage of the equal-tailed 50/68/90/95/99 % intervals (mean over the sampling seeds) against its
binomial 3σ at n, TARP's ATC (mean ± sd over 5 reference seeds, and a calibrated posterior's 95 %
range at n) and R² of the posterior mean. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from astrops.diagnostics import calibration as cal  # noqa: E402
from astrops.evaluation import held_out, predict_test  # noqa: E402
from astrops.models.flow import FlowTask  # noqa: E402
from astrops.models.flow_calibration import identity_map, reset_base  # noqa: E402

LEVELS = (0.50, 0.68, 0.90, 0.95, 0.99)
SAMPLING_SEEDS = (0, 1, 2)
N_SAMPLES = 1000


def member_fit(ens, x: torch.Tensor, y: torch.Tensor) -> None:
    """Each member's own head calibration fitted on (x, y), as training does per member."""
    for m in ens.members:
        m.eval()
        with torch.no_grad():
            out = m(x)
        m.task.fit_calibration(out, y)


def reset(ens) -> None:
    """Every calibration off: members' base and maps (flows) or var_scale (Gaussians), the
    ensemble's factors."""
    for m in ens.members:
        if isinstance(m.task, FlowTask):
            reset_base(m.task.flow)
            m.task.quantile_map.copy_(identity_map(m.task.n_params).to(m.task.quantile_map))
        elif hasattr(m.task, "var_scale"):
            m.task.var_scale.fill_(1.0)
    ens.calibration = {}


def recalibrate(ens, how: str, val, pairs) -> None:
    """Install the row's calibration on the ensemble (see the module docstring)."""
    reset(ens)
    flow = isinstance(ens.task, FlowTask)
    for m in ens.members:
        if flow:
            m.task.recalibration = "quantile_map" if how == "quantile_map" else "base"
    if how == "raw":
        return
    if how == "quantile_map":
        member_fit(ens, *val)
        ens.calibrate(*val)
        return
    x, y = val if how.endswith("/val") else pairs
    if not flow:
        member_fit(ens, x, y)
    ens.calibrate(x, y)


def samples_of(ens, x: torch.Tensor, seed: int) -> np.ndarray:
    """(N, L, P) posterior samples in physical units, seeded."""
    dec = predict_test(ens, x, seed)
    if isinstance(ens.task, FlowTask):
        return ens.task.draw(dec, N_SAMPLES).numpy()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ens.task.draw(dec, N_SAMPLES).numpy()


def coverage(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(len(LEVELS), P) fraction of truths inside the equal-tailed intervals."""
    rows = []
    for level in LEVELS:
        lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
        rows.append(((truth >= lo) & (truth <= hi)).mean(0))
    return np.array(rows)


def r_squared(ens, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """R² of the posterior mean (sampling seed 0), per parameter."""
    truth, mean = y.numpy().astype(float), samples_of(ens, x, 0).mean(1)
    return (1 - ((mean - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)).tolist()


def score_row(ens, x: torch.Tensor, y: torch.Tensor) -> dict:
    truth = y.numpy().astype(float)
    p_values, covers = [], []
    for seed in SAMPLING_SEEDS:
        s = samples_of(ens, x, seed)
        p_values.append(cal.sbc_uniformity(cal.sbc_ranks(s, truth, seed), N_SAMPLES))
        covers.append(coverage(s, truth))
        if seed == SAMPLING_SEEDS[0]:
            ranks = cal.sbc_ranks(s, truth, seed)
            points = np.linspace(0, 1, cal.ECDF_POINTS + 1)[1:-1]
            band = cal.ecdf_band(len(truth), points)
            ecdfs = cal.ecdf(cal.fractional_ranks(ranks, N_SAMPLES), points)
            inside = [bool(np.all((c >= band[0]) & (c <= band[1]))) for c in ecdfs]
            atcs = cal.tarp_atcs(s, truth)
    p = np.array(p_values)
    return {
        "sbc_p_median": np.median(p, 0).tolist(),
        "sbc_p_min": p.min(0).tolist(),
        "sbc_p_max": p.max(0).tolist(),
        "ecdf_within_band95": inside,
        "coverage": np.mean(covers, 0).tolist(),
        "coverage_sd_over_seeds": np.std(covers, 0, ddof=1).tolist(),
        "tarp_atc": float(atcs.mean()),
        "tarp_atc_sd": float(atcs.std(ddof=1)),
        "R2": r_squared(ens, x, y),
    }


def rows_for(ens, observed: bool) -> tuple[str, ...]:
    """The candidate rows; ``…/val×obs`` only under an observation (noiseless: it is ``…/val``)."""
    rows = ("raw", "quantile_map", "base/val", "base/val×obs")
    if not isinstance(ens.task, FlowTask):
        rows = ("raw", "var_scale/val", "var_scale/val×obs")
    return rows if observed else tuple(r for r in rows if not r.endswith("×obs"))


def markdown(results: dict, n: int, params: list[str]) -> str:
    se3 = [3 * np.sqrt(level * (1 - level) / n) for level in LEVELS]
    lo, hi = cal.tarp_atc_null(n)
    head = " | ".join(f"{100 * lv:g} % (±{s:.3f})" for lv, s in zip(LEVELS, se3, strict=True))
    lines = [
        f"n = {n} test spectra, {N_SAMPLES} samples each; SBC p: median [min, max] over sampling "
        f"seeds {list(SAMPLING_SEEDS)}; coverage: mean over those seeds, ± is 3 binomial SE; "
        f"TARP ATC: mean ± sd over {cal.TARP_SEEDS} reference seeds, calibrated 95 % range "
        f"[{lo:.3f}, {hi:.3f}].",
        "",
        f"| model | recalibration | parameter | SBC p | ECDF in band | {head} | TARP ATC | R² | "
        "R² (2nd store) |",
        "|---|---|---|---|---|" + "---|" * len(LEVELS) + "---|---|---|",
    ]
    for label, rows in results.items():
        for how, r in rows.items():
            for j, p in enumerate(params):
                sbc = (
                    f"{r['sbc_p_median'][j]:.2g} [{r['sbc_p_min'][j]:.1g}, "
                    f"{r['sbc_p_max'][j]:.1g}]"
                )
                cov = " | ".join(f"{r['coverage'][i][j]:.3f}" for i in range(len(LEVELS)))
                atc = f"{r['tarp_atc']:+.3f} ± {r['tarp_atc_sd']:.3f}" if j == 0 else ""
                lines.append(
                    f"| {label if j == 0 else ''} | {how if j == 0 else ''} | {p} | {sbc} | "
                    f"{'yes' if r['ecdf_within_band95'][j] else 'no'} | {cov} | {atc} | "
                    f"{r['R2'][j]:.3f} | {r.get('R2_second_store', ['–'] * 3)[j]:.4} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="LABEL=ENSEMBLE_DIR")
    parser.add_argument("--test-store", required=True)
    parser.add_argument("--store", default=None)
    parser.add_argument(
        "--r2-store", default=None, help="a second held-out store for R² alone (data/holdout)"
    )
    parser.add_argument("--out", default="posterior_ablation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results, n, params = {}, 0, []
    for spec in args.models:
        label, _, path = spec.partition("=")
        predictor, dm = held_out(path, args.test_store, store=args.store)
        ens, params = predictor.model, predictor.parameters
        val, pairs = dm.tensors["val"], dm.calibration_tensors()
        x, y = dm.tensors["test"]
        n = len(y)
        second = (
            held_out(path, args.r2_store, store=args.store)[1].tensors["test"]
            if args.r2_store
            else None
        )
        results[label] = {}
        for how in rows_for(ens, dm.sigma is not None):
            recalibrate(ens, how, val, pairs)
            results[label][how] = score_row(ens, x, y)
            if args.r2_store:
                results[label][how]["R2_second_store"] = r_squared(ens, *second)
            print(label, how, json.dumps(results[label][how]), flush=True)
    meta = {"n_test": n, "parameters": params, "levels": LEVELS, "models": args.models}
    Path(args.out + ".json").write_text(json.dumps({**meta, "rows": results}, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(results, n, params) + "\n")
    print(markdown(results, n, params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
