"""Is the emulator right where the likelihood looks? ``python -m
astrops.reference.emulator_check``:

    python -m astrops emulator-check EMULATOR --store data/seeds [--noise
    data/noise/hera350_1000h | none]
                                               [--min-k 0.1] [--max-k 1.0] [--out emulator_check]

The store holds a fixed-θ design (``simulate.py simulation.sampler=fixed``): several parameter
points, each simulated with many initial-condition seeds. Per point and measured (z, k) bin the
seed average is the truth the emulated mean must match to within 20 % of the likelihood's total σ =
√(σ_noise² + σ_cv² + σ_emu²) (f = 0; σ_cv the seeds' own scatter, σ_emu the emulator's own error
term); the emulated cosmic variance is set beside the seeds' scatter. The seed average is itself
uncertain by σ_cv/√n_seeds: a bin passes when its miss is within √((0.2 σ_tot)² + that floor²),
the check's own floor in quadrature (``--noise none``: σ_noise = 0 on [min_k, max_k], for an
emulator used with upper limits). Writes ``emulator_check.md`` (per point),
``emulator_check.csv`` (per bin: header and rows) and a figure.
"""

from __future__ import annotations

import numpy as np
import torch

TOLERANCE = 0.2  # of the likelihood's total per-bin σ


def check(emulator_path: str, store: str, noise: str, min_k: float, max_k: float) -> list[dict]:
    """One row per (point, redshift, measured k-bin)."""
    from astrops.data.observation import Observation
    from astrops.models.emulator import load_emulator
    from astrops.store import Store

    emu = load_emulator(emulator_path)
    ds = Store(store).dataset(None)
    if (
        list(ds.parameters) != list(emu.param_names)
        or len(ds.k) != len(emu.k)
        or not np.allclose(ds.k, emu.k)
    ):
        raise ValueError(
            f"{store} holds other parameters or k-bins than the emulator's: simulate the fixed "
            "design with the "
            "emulator's configuration (simulation=reference_multiz)"
        )
    missing = [z for z in emu.redshifts if z not in list(ds.redshifts)]
    if missing:
        raise ValueError(
            f"{store} has no spectra at z = {missing}, which the emulator emulates: simulate them "
            "too"
        )
    recs = ds.load()
    zi = [list(ds.redshifts).index(z) for z in emu.redshifts]
    bins = emu.bins.numpy()
    delta = recs.delta[:, zi][:, :, bins]
    k = np.asarray(ds.k)[bins]
    if noise == "none":  # no instrument (upper limits carry their own variance): σ_noise = 0
        inside = (k >= min_k) & (k <= max_k)
        sigma = np.where(inside, 0.0, np.nan)[None, :].repeat(len(emu.redshifts), 0)
    else:
        sigma = Observation("check", noise, min_k, max_k).sigma(k, emu.redshifts)
    points, group, counts = np.unique(recs.params, axis=0, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"{store} has points simulated once: a fixed-θ design (simulation.sampler=fixed) with "
            "several "
            "seeds per point is needed for a seed average and its scatter"
        )
    with torch.no_grad():
        mean, var = emu(torch.as_tensor(points, dtype=torch.float32))
    rows = []
    for p, theta in enumerate(points):
        d = delta[group.ravel() == p]
        avg, cv = d.mean(0), d.std(0, ddof=1)
        for i, z in enumerate(emu.redshifts):
            for j, b in enumerate(bins):
                if not np.isfinite(sigma[i, j]):
                    continue
                emu_err = float((emu.error_scale[i, j] * var[p, i, j]).sqrt())
                total = float(np.sqrt(sigma[i, j] ** 2 + cv[i, j] ** 2 + emu_err**2))
                floor = cv[i, j] / np.sqrt(len(d))
                miss = abs(float(mean[p, i, j]) - avg[i, j])
                rows.append(
                    {
                        "point": p,
                        **{n: float(v) for n, v in zip(emu.param_names, theta, strict=True)},
                        "z": float(z),
                        "k": float(ds.k[b]),
                        "n_seeds": len(d),
                        "seed_mean": float(avg[i, j]),
                        "emulated_mean": float(mean[p, i, j]),
                        "sigma_noise": float(sigma[i, j]),
                        "sigma_cv_seeds": float(cv[i, j]),
                        "sigma_cv_emulated": float(var[p, i, j].sqrt()),
                        "sigma_emu": emu_err,
                        "error_in_sigma_total": float(miss / total),
                        "seed_mean_error_in_sigma_total": float(floor / total),
                        "within_tolerance": bool(miss <= np.hypot(TOLERANCE * total, floor)),
                    }
                )
    return rows


def summary(rows: list[dict], names: list[str]) -> str:
    """Markdown: per point, the fraction of bins within tolerance and what limits the check."""
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = [
        "| point ("
        + ", ".join(names)
        + ") | seeds | bins | within 20 % σ_tot (floor in quadrature) | "
        "median / max error [σ_tot] | "
        "seed-mean error [σ_tot] | emulated / seeds' σ_cv (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, g in [*df.groupby("point"), ("all", df)]:
        theta = "all" if p == "all" else ", ".join(f"{g[n].iloc[0]:.4g}" for n in names)
        ratio = (g["sigma_cv_emulated"] / g["sigma_cv_seeds"].clip(lower=1e-30)).median()
        lines.append(
            f"| {theta} | {int(g['n_seeds'].iloc[0])} | {len(g)} | "
            f"{g['within_tolerance'].mean():.2f} | "
            f"{g['error_in_sigma_total'].median():.3f} / "
            f"{g['error_in_sigma_total'].max():.3f} | "
            f"{g['seed_mean_error_in_sigma_total'].median():.3f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict]):
    """Seed mean ± seeds' σ_cv (points) against emulated mean ± emulated σ_cv (line, band), per
    point and z."""
    import pandas as pd

    from astrops.plotting import plt

    df = pd.DataFrame(rows)
    pts, zs = sorted(df["point"].unique()), sorted(df["z"].unique())
    fig, axes = plt.subplots(
        len(pts), len(zs), figsize=(3.2 * len(zs), 2.4 * len(pts)), squeeze=False, sharex=True
    )
    for r, p in enumerate(pts):
        for c, z in enumerate(zs):
            g, ax = df[(df["point"] == p) & (df["z"] == z)], axes[r][c]
            ax.errorbar(g["k"], g["seed_mean"], g["sigma_cv_seeds"], fmt="o", ms=3, label="seeds")
            ax.plot(g["k"], g["emulated_mean"], color="C1", label="emulator")
            ax.fill_between(
                g["k"],
                g["emulated_mean"] - g["sigma_cv_emulated"],
                g["emulated_mean"] + g["sigma_cv_emulated"],
                color="C1",
                alpha=0.3,
            )
            ax.set_xscale("log")
            ax.set_title(f"point {p}, z = {z:g}", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel(r"$k$ [Mpc$^{-1}$]")
    fig.supylabel(r"$\Delta^2_{21}$ [mK$^2$]")
    fig.tight_layout()
    return fig
