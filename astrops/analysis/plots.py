"""Data plots: ``python -m astrops plots spectra <dataset> [--store DIR] [--redshift 8]
[--out DIR] [--mlflow]``.

Δ²(k) curves coloured by each of the three parameters (the seed study's figure), and the
distributions of the parameters and of the global neutral fraction, saved as PNG and optionally
logged to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from astrops.errors import StoreError
from astrops.parameters import LABELS
from astrops.plotting import plt, save_figures
from astrops.store import Store


def spectra_figure(
    k: np.ndarray, delta: np.ndarray, params: np.ndarray, names: list[str], max_curves: int = 300
) -> Figure:
    """One panel per parameter: every spectrum's Δ²(k), coloured by that parameter's value."""
    idx = np.random.default_rng(0).permutation(len(delta))[:max_curves]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), sharey=True)
    for j, (ax, name) in enumerate(zip(np.atleast_1d(axes), names, strict=True)):
        vals = params[idx, j]
        norm = plt.Normalize(vals.min(), vals.max())
        for i, v in zip(idx, vals, strict=True):
            ax.plot(
                k,
                np.where(delta[i] > 0, delta[i], np.nan),
                color=plt.cm.viridis(norm(v)),
                lw=0.6,
                alpha=0.6,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$k$ [Mpc$^{-1}$]")
        fig.colorbar(
            plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=LABELS.get(name, name)
        )
    np.atleast_1d(axes)[0].set_ylabel(r"$\Delta^2_{21}$ [mK$^2$]")
    fig.tight_layout()
    return fig


def distributions_figure(
    params: np.ndarray, xH: np.ndarray, names: list[str], redshift: float
) -> Figure:
    """Histograms of the parameters and of x̄_HI: how the prior was sampled and how many boxes are
    fully ionized or neutral (where the spectrum carries little information)."""
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4 * (len(names) + 1), 3.5))
    for j, name in enumerate(names):
        axes[j].hist(params[:, j], bins=30, color="C0")
        axes[j].set_xlabel(LABELS.get(name, name))
    axes[-1].hist(xH, bins=30, color="C1")
    axes[-1].set_xlabel(rf"$\bar x_{{\rm HI}}$ at z = {redshift:g}")
    axes[0].set_ylabel("simulations")
    fig.tight_layout()
    return fig


def plot_spectra(
    store_dir: str, dataset: str | None, redshift: float, out_dir: str
) -> dict[str, Path]:
    """Both figures of one dataset at one redshift as ``<dataset>_z<redshift>_<figure>.png``;
    parameter names come from the dataset. Raises StoreError for a dataset or redshift the store
    lacks."""
    ds = Store(store_dir).dataset(dataset)
    zs = np.asarray(ds.redshifts)
    if not np.isclose(zs, redshift).any():
        raise StoreError(
            f"redshift {redshift} not in dataset {ds.name} (it has {ds.redshifts}): use --redshift"
        )
    zi = int(np.flatnonzero(np.isclose(zs, redshift))[0])
    r = ds.load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "spectra": spectra_figure(ds.k, r.delta[:, zi], r.params, ds.parameters),
        "distributions": distributions_figure(r.params, r.xH[:, zi], ds.parameters, redshift),
    }
    return save_figures(figures, out, prefix=f"{ds.name}_z{redshift:g}_")
