"""Data plots: ``python -m astrops.plots spectra <dataset> [--store DIR] [--redshift 8] [--out DIR] [--mlflow]``.

Δ²(k) curves coloured by each of the three parameters (the seed study's figure), and the distributions
of the parameters and of the global neutral fraction, saved as PNG and optionally logged to MLflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from astrops.report import LABELS, plt
from astrops.store import Store, StoreError


def spectra_figure(k: np.ndarray, delta: np.ndarray, params: np.ndarray, names: list[str], max_curves: int = 300):
    """One panel per parameter: every spectrum's Δ²(k), coloured by that parameter's value."""
    idx = np.random.default_rng(0).permutation(len(delta))[:max_curves]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), sharey=True)
    for j, (ax, name) in enumerate(zip(np.atleast_1d(axes), names, strict=True)):
        vals = params[idx, j]
        norm = plt.Normalize(vals.min(), vals.max())
        for i, v in zip(idx, vals, strict=True):
            ax.plot(k, np.where(delta[i] > 0, delta[i], np.nan), color=plt.cm.viridis(norm(v)), lw=0.6, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$k$ [Mpc$^{-1}$]")
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=LABELS.get(name, name))
    np.atleast_1d(axes)[0].set_ylabel(r"$\Delta^2_{21}$ [mK$^2$]")
    fig.tight_layout()
    return fig


def distributions_figure(params: np.ndarray, xH: np.ndarray, names: list[str], redshift: float):
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4 * (len(names) + 1), 3.5))
    for j, name in enumerate(names):
        axes[j].hist(params[:, j], bins=30, color="C0")
        axes[j].set_xlabel(LABELS.get(name, name))
    axes[-1].hist(xH, bins=30, color="C1")
    axes[-1].set_xlabel(rf"$\bar x_{{\rm HI}}$ at z = {redshift:g}")
    axes[0].set_ylabel("simulations")
    fig.tight_layout()
    return fig


def plot_spectra(store_dir: str, dataset: str | None, redshift: float, out_dir: str) -> dict[str, Path]:
    ds = Store(store_dir).dataset(dataset)
    zs = np.asarray(ds.redshifts)
    if not np.isclose(zs, redshift).any():
        raise StoreError(f"redshift {redshift} not in dataset {ds.name} (it has {ds.redshifts}): use --redshift")
    zi = int(np.flatnonzero(np.isclose(zs, redshift))[0])
    r = ds.load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in (("spectra", spectra_figure(ds.k, r.delta[:, zi], r.params, ds.parameters)),
                      ("distributions", distributions_figure(r.params, r.xH[:, zi], ds.parameters, redshift))):
        paths[name] = out / f"{ds.name}_z{redshift:g}_{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    root = Path(os.environ.get("ASTROPS_ROOT", Path(__file__).resolve().parents[1]))
    ap = argparse.ArgumentParser(prog="python -m astrops.plots", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("spectra", help="spectra coloured by parameter, parameter and x_HI distributions")
    sp.add_argument("dataset", nargs="?", default=None, help="dataset name or hash prefix (default: the only one)")
    sp.add_argument("--store", default=str(root / "data" / "reference"))
    sp.add_argument("--redshift", type=float, default=8.0)
    sp.add_argument("--out", default="plots")
    sp.add_argument("--mlflow", action="store_true", help="log the figures to MLflow (experiment astrops-data)")
    args = ap.parse_args(argv)
    try:
        paths = plot_spectra(args.store, args.dataset, args.redshift, args.out)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths.values():
        print(p)
    if args.mlflow:
        import mlflow

        from astrops.sweeps import prepare_experiment

        uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/tracking/mlflow.db")
        exp_id = prepare_experiment(uri, "astrops-data", str(root / "tracking" / "artifacts"))
        client = mlflow.MlflowClient(uri)
        run = client.create_run(exp_id, run_name=f"plots-{args.dataset or 'dataset'}", tags={"kind": "data_plots"})
        for p in paths.values():
            client.log_artifact(run.info.run_id, str(p), "figures")
        client.set_terminated(run.info.run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
