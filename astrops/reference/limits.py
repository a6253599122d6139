"""What published band-power upper limits say about θ: the emulator in the one-sided likelihood.

The emulated mean Δ²(k) at each band's redshift goes onto the window functions' k-values and
through each field's window (:mod:`astrops.reference.band_powers`), and the upper-limit likelihood
(:mod:`astrops.reference.upper_limit`, 21CMMC's) scores it with HERA's variance, 21CMMC's 20 %
modelling error and the emulator's own 1σ error (√η·σ_cv, 21CMMC's ``delta_err``) in quadrature.
A deliberate difference: 21CMMC's ``reduce_data`` puts ``delta_err`` on the bands with a cubic
spline over redshift, which fails for two coeval redshifts and is then dropped without a word;
here it goes onto the window k-values linearly, like the mean (``--no-emulator-error`` drops it).
The posterior (uniform prior on the training box) is computed on the reference's mass-refined grid
(:mod:`astrops.reference.grid`).

What a flat-looking posterior means is said by three numbers, each against what the prior alone
gives: per-parameter one-sided 95 % bounds beside the prior's, the prior volume outside the 95 %
highest-posterior-density region (the prior alone: 5 %), and the prior volume the data disfavour
by a likelihood ratio, 2 ln(L_max / L) > χ²₃(0.95) = 7.81 for the three parameters (the prior
alone: 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import chi2

from astrops.reference.band_powers import Band, on_window_k, windowed
from astrops.reference.grid import GridPosterior
from astrops.reference.upper_limit import MODEL_ERROR, band_fields, upper_limit_lnl

LEVEL = 0.95  # 2 ln(L_max / L) > χ²_P(0.95) (Wilks, P parameters): θ disfavoured at 95 %
INFORMATIVE = 0.01  # a bound moved by more than this fraction of the prior range says something


@dataclass
class LimitsModel:
    """The emulator (θ → mean Δ², σ_cv² on its bins) and the release's bands it is scored on."""

    emu: Any  # SpectrumEmulator
    bands: list[Band]
    model_error: float = MODEL_ERROR
    emulator_error: bool = True

    def __post_init__(self) -> None:
        zs = np.asarray(self.emu.redshifts, dtype=np.float64)
        self.zi = []
        for band in self.bands:
            i = int(np.argmin(np.abs(zs - band.z)))
            if abs(zs[i] - band.z) > 1e-3:
                raise ValueError(
                    f"the emulator's redshifts {zs.tolist()} lack the band at z = {band.z:.5g}: "
                    "train it on simulations at the bands (python train.py "
                    "experiment=emulator_h1c)"
                )
            self.zi.append(i)
        self.k = np.asarray(self.emu.k, dtype=np.float64)[self.emu.bins.numpy()]

    def on_windows(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per band, the emulated mean and its 1σ error (B, n_kwf) on the window k-values."""
        with torch.no_grad():
            mean, var = self.emu(torch.as_tensor(theta, dtype=torch.float32))
            err = self.emu.error_var(var).sqrt()
        out = []
        for band, i in zip(self.bands, self.zi, strict=True):
            m = on_window_k(self.k, mean[:, i].double().numpy(), band.k_window)
            e = on_window_k(self.k, err[:, i].double().numpy(), band.k_window)
            out.append((m, e))
        return out

    def lnl(self, theta: np.ndarray) -> np.ndarray:
        """ln L (B,) at θ (B, P), summed over bands, fields and k-bins."""
        total = np.zeros(len(theta))
        for band, (m, e) in zip(self.bands, self.on_windows(theta), strict=True):
            total += upper_limit_lnl(
                m,
                band.limits,
                band.window,
                self.model_error,
                e if self.emulator_error else None,
            )
        return total


def limits_table(bands: list[Band], k: np.ndarray, delta: np.ndarray, params: np.ndarray):
    """Per band, field and k-bin: the 2σ limit (Δ² + 2σ) beside the largest WΔ² any of the
    spectra ``delta`` (N, n_bands, n_k) on ``k`` reaches, and the θ that reaches it."""
    import pandas as pd

    rows = []
    for b, band in enumerate(bands):
        model = on_window_k(k, delta[:, b], band.k_window)
        fields = band_fields(band.limits, band.window)
        for f, (kb, d, var, _), after in zip(
            range(len(fields)), fields, windowed(band, model), strict=True
        ):
            for j in range(len(kb)):
                top = int(np.argmax(after[:, j]))
                limit = d[j] + 2 * np.sqrt(var[j])
                rows.append(
                    {
                        "z": band.z,
                        "field": f,
                        "k": kb[j],
                        "delta2": d[j],
                        "sigma": np.sqrt(var[j]),
                        "limit_2sigma": limit,
                        "max_sim_wdelta2": after[top, j],
                        "ratio": after[top, j] / limit,
                        **{f"theta_{i}": v for i, v in enumerate(params[top])},
                    }
                )
    return pd.DataFrame(rows)


def one_sided_bounds(post: GridPosterior, box: np.ndarray, names: list[str]) -> list[dict]:
    """Per parameter: the 95 % one-sided bounds (5 % and 95 % quantiles) and the two-sided 95 %
    interval beside the prior's own, and which of them the data move by more than 1 % of the
    range (``constraint``: none, upper, lower or two-sided)."""
    q = post.quantile([0.05, 0.95, 0.025, 0.975])
    rows = []
    for j, name in enumerate(names):
        lo, hi = box[j]
        width = hi - lo
        prior_lower, prior_upper = lo + 0.05 * width, lo + 0.95 * width
        upper = prior_upper - q[1, j] > INFORMATIVE * width
        lower = q[0, j] - prior_lower > INFORMATIVE * width
        kind = {(False, False): "none", (True, False): "upper", (False, True): "lower"}.get(
            (upper, lower), "two-sided"
        )
        rows.append(
            {
                "parameter": name,
                "constraint": kind,
                "lower95": q[0, j],
                "upper95": q[1, j],
                "prior_lower95": prior_lower,
                "prior_upper95": prior_upper,
                "lo95": q[2, j],
                "hi95": q[3, j],
            }
        )
    return rows


def prior_volume_fractions(
    post: GridPosterior, box: np.ndarray, prior_lnl: np.ndarray, lnl_max: float
) -> dict:
    """The prior volume outside the 95 % HPD region of ``post`` (its cells outside the final
    grid's box hold no mass and count as outside), the prior volume the likelihood ratio
    disfavours (``prior_lnl``: ln L at the cells of a regular grid over the prior box;
    ``lnl_max``: the highest ln L seen, the refined grid's best cell included), and the
    information gain over the prior [bits]."""
    vol = np.ones(post.mass.shape)
    for j, e in enumerate(post.edges):
        shape = [1] * vol.ndim
        shape[j] = len(e) - 1
        vol = vol * np.diff(e).reshape(shape)
    frac = vol / float(np.prod(box[:, 1] - box[:, 0]))  # each cell's share of the prior
    mass = post.mass.ravel()
    order = np.argsort(mass)[::-1]
    inside = min(int(np.searchsorted(np.cumsum(mass[order]), 0.95)) + 1, mass.size)
    hpd = float(frac.ravel()[order[:inside]].sum())
    threshold = chi2.ppf(LEVEL, len(box))
    lr = float(np.mean(2 * (max(lnl_max, prior_lnl.max()) - prior_lnl) > threshold))
    keep = mass > 0
    info = float((mass[keep] * np.log2(mass[keep] / frac.ravel()[keep])).sum())
    return {
        "excluded_volume_hpd95": 1.0 - hpd,
        "excluded_volume_lr95": lr,
        "information_gain_bits": info,
    }
