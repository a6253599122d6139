"""The one-sided likelihood of published band-power upper limits (HERA H1C IDR3 and its layout).

Systematics can only add power, so a measured band power d with variance var bounds the model from
above: per field and k-bin, L = ½ [1 + erf((d − WΔ²) / (√2 σ))] with σ² = var + (f·WΔ²)² (+ the
emulator's error after the window, when one is used), W the field's window function applied to the
model Δ² on the window's own k-values. This is 21CMMC's
``Likelihood1DPowerLightconeUpper.computeLikelihood`` term by term (tests/test_upper_limit.py
checks 1e-10 against it), written once here so that the reference can evaluate it for a whole grid.

References:
    HERA Collaboration (2022), ApJ 925, 221 (H1C IDR2 limits); (2023), ApJ 945, 124 (IDR3).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

MODEL_ERROR = 0.2  # 21CMMC's fractional modelling error for these limits
FLOOR = 1e-50  # 21CMMC's floor on a field-bin's likelihood (ln 1e-50 ≈ −115)


def band_fields(
    band: np.ndarray, window: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per field: (k, d, var, W) on its finite k-bins; ``band`` (fields, n_k, 3) = [k (1/Mpc),
    Δ² (mK²), variance (mK⁴)], ``window`` (fields, n_k, n_kwf)."""
    out = []
    for f in range(band.shape[0]):
        k = band[f, :, 0]
        n = int(np.count_nonzero(~np.isnan(k)))
        out.append((k[:n], band[f, :n, 1], band[f, :n, 2], window[f, :n, :]))
    return out


def upper_limit_lnl(
    model: np.ndarray,
    band: np.ndarray,
    window: np.ndarray,
    model_error: float = MODEL_ERROR,
    emulator_error: np.ndarray | None = None,
) -> np.ndarray:
    """ln L (B,) of model Δ² (B, n_kwf) on the window's k-values [mK²], summed over fields and
    k-bins (NaN terms skipped, as 21CMMC's ``nansum``); ``emulator_error`` (n_kwf,) or (B, n_kwf)
    is the 1σ error of the model before the window (21CMMC's ``delta_err``)."""
    model = np.atleast_2d(np.asarray(model, dtype=np.float64))
    lnl = np.zeros(len(model))
    for _, d, var, w in band_fields(band, window):
        after = model[:, : w.shape[1]] @ w.T  # (B, n_k)
        var_total = var + (model_error * after) ** 2
        if emulator_error is not None:
            var_total = var_total + (emulator_error[..., : w.shape[1]] @ w.T) ** 2
        like = 0.5 + 0.5 * erf((d - after) / (np.sqrt(2.0) * np.sqrt(var_total)))
        like = np.where(like <= 0.0, FLOOR, like)
        lnl += np.nansum(np.log(like), axis=1)
    return lnl
