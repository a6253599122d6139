"""The likelihood reference for any observed spectrum:

    python -m astrops.reference.posterior --emulator EMU --observation NAME --input FILE.npz \
        --output FILE.csv [--samples N] [--plot] [--workers W] [--covariance fixed|theta] \
        [--model-error F]

``--input`` is a 21CMMC-format npz (``k`` [1/Mpc], ``delta`` (N, n_z, n_k) [mK²], ``redshifts``),
the format predict.py reads; its redshifts must be the emulator's. ``--observation`` names a
``conf/observation`` entry: its noise tables and k-range say which bins are measured and how
noisy. Spectra on another k-grid are interpolated in log k onto the emulator's measured bins
(never extrapolated). The posterior is the emulator inside 21CMMC's Gaussian likelihood with the
emulator's error, on a grid refined by mass under the training priors
(:mod:`astrops.reference.solver`).

Writes predict.py's columns (``<p>``, ``<p>_std``, ``<p>_median``, ``<p>_lo68``, ``<p>_hi68``,
``<p>_lo95``, ``<p>_hi95``, ``out_of_distribution``, ``ood_reason``) with a ``.json`` beside it;
with ``--samples N`` ``<stem>_samples.npz`` (``samples`` (N_spectra, N, 3), ``parameters``); with
``--plot`` a corner plot per spectrum. A row is flagged out of distribution when its grid did not
resolve or when the emulated spectrum at the posterior's peak misdescribes it (χ² p < 10⁻³).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from astrops.errors import InputError

CHI2_ALPHA = 1e-3  # a peak χ² this improbable: the emulated model does not describe the spectrum


def measured_bins(emu, sigma: np.ndarray) -> list[int]:
    """The emulator's bins the observation measures at every redshift (sigma: (n_z, n_k))."""
    return [int(b) for b in emu.bins.tolist() if np.isfinite(sigma[:, b]).all()]


def spectra_on_bins(
    emu, k: np.ndarray, delta: np.ndarray, redshifts: np.ndarray | None, bins: list[int]
) -> torch.Tensor:
    """The input's Δ² (N, n_z, len(bins)) on the emulator's measured bins; any problem is one
    :class:`InputError` line, raised before any work."""
    from astrops.data.observation import regrid_log_k

    zs = list(emu.redshifts)
    if redshifts is None and len(zs) == 1 and delta.ndim == 2:
        redshifts, delta = np.array(zs), delta[:, None, :]
    if redshifts is None or np.shape(redshifts) != (len(zs),) or not np.allclose(redshifts, zs):
        given = "none" if redshifts is None else np.atleast_1d(redshifts).tolist()
        raise InputError(
            f"input redshifts {given} are not the emulator's {zs}: give 'redshifts' and delta "
            "(N, n_z, n_k) at exactly these, in this order"
        )
    if delta.ndim != 3 or delta.shape[1:] != (len(zs), len(k)):
        raise InputError(
            f"input delta has shape {delta.shape}: give (N, {len(zs)}, {len(k)}) for "
            f"{len(zs)} redshifts and {len(k)} k-bins"
        )
    if not np.isfinite(delta).any():
        raise InputError("input delta is NaN everywhere: give the measured Δ² [mK²]")
    emu_k = np.asarray(emu.k, dtype=np.float64)
    if len(k) == len(emu_k) and np.allclose(k, emu_k, rtol=1e-6, atol=0):
        out = delta[:, :, bins]
    else:
        out = regrid_log_k(k, delta, emu_k[bins])
        if not np.isfinite(out).any(axis=(0, 1)).all():
            finite = k[np.isfinite(delta).reshape(-1, len(k)).all(axis=0)]
            span = f"{finite.min():.4g}..{finite.max():.4g}" if len(finite) else "nothing"
            raise InputError(
                f"input k-grid (finite in every spectrum: {span} 1/Mpc) cannot be interpolated "
                f"onto the bins the observation measures ({emu_k[bins].min():.4g}.."
                f"{emu_k[bins].max():.4g} 1/Mpc): give k in 1/Mpc covering them"
            )
    bad = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))
    if len(bad):
        raise InputError(
            f"spectra {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''} have NaN or inf on "
            "measured bins: drop them or fill those bins"
        )
    return torch.as_tensor(out, dtype=torch.float64)


def ood_columns(summaries: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``out_of_distribution`` and ``ood_reason`` per spectrum: an unresolved grid, a bad fit."""
    from scipy.stats import chi2

    flags, reasons = [], []
    for s in summaries:
        why = []
        if not s["resolved"]:
            why.append("reference grid unresolved")
        p = float(chi2.sf(s["chi2"], s["dof"]))
        if p < CHI2_ALPHA:
            why.append(f"peak chi2 {s['chi2']:.1f} for {s['dof']} values (p {p:.1e})")
        flags.append(bool(why))
        reasons.append("; ".join(why))
    return np.array(flags), np.array(reasons, dtype=object)


def columns_of(summaries: list[dict[str, Any]], parameters: list[str]) -> dict[str, np.ndarray]:
    """predict.py's column layout."""
    cols: dict[str, np.ndarray] = {}
    for j, p in enumerate(parameters):
        cols[p] = np.array([s["mean"][j] for s in summaries])
        cols[f"{p}_std"] = np.array([s["std"][j] for s in summaries])
        for q in ("median", "lo68", "hi68", "lo95", "hi95"):
            cols[f"{p}_{q}"] = np.array([s[q][j] for s in summaries])
    cols["out_of_distribution"], cols["ood_reason"] = ood_columns(summaries)
    return cols


if __name__ == "__main__":  # the command line lives in the entry layer
    from astrops.entry.reference_posterior import posterior_main

    raise SystemExit(posterior_main())
