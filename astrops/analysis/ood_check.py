"""Does a model's out-of-distribution flag fire on normal spectra, and on wrong ones?

    python -m astrops ood-check MODEL --test-store DIR [--test-dataset NAME] [--json out.json]

The test spectra are simulations the model never saw, observed as it was trained to see them (one
fixed noise realisation each, from the training ``data.split_seed``: :func:`astrops.evaluation.
held_out`). Every one is in distribution by construction, so the share flagged
(``ood_score`` below the model's false-alarm rate) is the false-alarm rate. Three kinds of wrong
input are made from the same spectra:

- ``times10``: Δ² × 10, as foreground leakage would add power;
- ``reversed_k``: the measured k-bins in reverse order, within each redshift;
- ``reversed_z``: the redshift slices in reverse order, so z = 10 is given as z = 7 (multi-z).

Each rate comes with its binomial standard error √(p(1 − p)/n), and again on the informative
subset (0.05 < x̄_HI < 0.95 at one or more redshifts) and per x̄_HI bin of the middle redshift
(``by_xH`` in the JSON): a fully ionized box has Δ² ≈ 0 in every
bin, and × 10 or a reversed k-axis of nothing is still nothing, so no score can see those. A
spectrum the model refuses outright (predict's one-line refusal) counts as detected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from astrops.errors import InputError

KINDS = ("in_distribution", "times10", "reversed_k", "reversed_z")


def wrong_inputs(delta: np.ndarray, kept_bins: np.ndarray) -> dict[str, np.ndarray]:
    """The good spectra (N, n_z, n_k) and the three kinds of wrong input made from them."""
    reversed_k = delta.copy()
    reversed_k[:, :, kept_bins] = delta[:, :, kept_bins[::-1]]
    out = {"in_distribution": delta, "times10": delta * 10.0, "reversed_k": reversed_k}
    if delta.shape[1] > 1:
        out["reversed_z"] = delta[:, ::-1, :].copy()
    return out


def rate(flags: np.ndarray) -> dict[str, float]:
    """The share flagged, its binomial standard error and n."""
    n = len(flags)
    p = float(np.mean(flags)) if n else float("nan")
    return {"rate": p, "se": float(np.sqrt(p * (1 - p) / n)) if n else float("nan"), "n": n}


def flagged(
    predictor: Any, k: np.ndarray, delta: np.ndarray, redshifts: list[float]
) -> np.ndarray:
    """(N,) True where the OOD score flags a spectrum (or the model refuses the input)."""
    try:
        cols = predictor.columns(k, delta, np.asarray(redshifts))
    except InputError:
        return np.ones(len(delta), dtype=bool)
    return np.asarray(cols["ood_score"]) < predictor.novelty.alpha


def check(
    model: str | Path,
    test_store: str | Path,
    test_dataset: str | None = None,
    store: str | Path | None = None,
) -> dict[str, Any]:
    """False-alarm and detection rates of ``model``'s OOD flag on ``test_store``'s spectra."""
    from astrops.evaluation import held_out
    from astrops.inference import load_model

    if load_model(model).novelty is None:  # before the data are read
        raise InputError(f"{model} predates the OOD score: retrain it to check its flag")
    predictor, dm = held_out(model, test_store, test_dataset, store)
    delta = dm.delta[dm.test_idx]
    informative = dm.informative_mask(dm.test_idx)
    results: dict[str, Any] = {
        "model": str(model),
        "test_store": str(test_store),
        "alpha": predictor.novelty.alpha,
        "space": predictor.novelty.space,
        "n_calibration": len(predictor.novelty.calibration),
        "redshifts": predictor.redshifts,
    }
    xh = dm.xH[dm.test_idx][:, len(predictor.redshifts) // 2]  # the middle redshift's
    bins = {
        "xH=0": xh == 0,
        "0<xH<=0.05": (xh > 0) & (xh <= 0.05),
        "0.05<xH<0.95": (xh > 0.05) & (xh < 0.95),
        "xH>=0.95": xh >= 0.95,
    }
    for kind, x in wrong_inputs(delta, predictor.kept_bins).items():
        flags = flagged(predictor, predictor.k, x, predictor.redshifts)
        results[kind] = {"all": rate(flags), "informative": rate(flags[informative])}
        results[kind]["by_xH"] = {name: rate(flags[sel]) for name, sel in bins.items()}
    return results


def table(results: dict[str, Any]) -> str:
    """The rates as a Markdown table (one row per kind of input)."""
    rows = [
        "| input | flagged (all) | flagged (0.05 < x̄_HI < 0.95) |",
        "|---|---|---|",
    ]
    for kind in KINDS:
        if kind in results:
            a, i = results[kind]["all"], results[kind]["informative"]
            rows.append(
                f"| {kind} | {a['rate']:.3f} ± {a['se']:.3f} (n = {a['n']}) | "
                f"{i['rate']:.3f} ± {i['se']:.3f} (n = {i['n']}) |"
            )
    return "\n".join(rows)
