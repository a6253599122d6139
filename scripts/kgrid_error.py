"""How wrong is a stored spectrum mapped onto another k-grid? Measured on real 21cmFAST boxes.

    .venv/bin/python scripts/kgrid_error.py [--n 8] [--redshift 8] [--hii-dim 50] [--box-len 125]
                                            [--json out.json]                        (make
                                            kgrid-error)

An observation that names its own k-bins (``observation.k_bins``) trains on the stored 22-bin
spectra mapped onto those bins by :func:`astrops.data.observation.regrid_log_k` (Δ² linear in log k
between the two nearest stored bins). The truth for a bin is what 21CMMC's own ``compute_power``
gives when the same box is binned on that grid directly. For ``--n`` parameter points drawn from
the reference priors (base seed 7001: a design used for nothing else) the same box (same seed, same
parameters) is simulated with the reference configuration and its power spectrum computed on the
stored binning (21CMMC's default, ``int(HII_DIM / 2.2)`` log bins) and on other 21CMMC binnings (15
and 30 log bins, 22 linear bins). For every bin centre of the other grid inside [0.1, 1.0] 1/Mpc
and inside the stored finite range, the script reports the relative error |regridded − direct| /
direct (bins with direct Δ² > 0) and, for scale, the error in units of the HERA-350 1 000 h thermal
1σ at that redshift.

Both binnings bin the same box, but a bin's Δ² is an average over the modes in that bin, so part of
the "error" is that the two grids average different modes: it is what a user pays for measuring on
another grid than the simulations', which is what the number should say.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BINNINGS = {
    "log15": {"n_psbins": 15},
    "log30": {"n_psbins": 30},
    "linear22": {"n_psbins": 22, "log_bins": False},
}
K_RANGE = (0.1, 1.0)  # 1/Mpc: the observations' default min_k, max_k


def measure(
    n: int,
    redshift: float,
    hii_dim: int,
    box_len: float,
    base_seed: int = 7001,
    tables_dir: str | os.PathLike | None = ROOT / "data/noise/hera350_1000h",
) -> dict:
    """Per binning: median / 90th percentile / max relative error and the median error over the
    HERA σ."""
    from omegaconf import OmegaConf

    from astrops.data.observation import regrid_log_k
    from astrops.simulation import CoevalSimulator, Design
    from astrops.simulation.sensitivity import load_tables

    # the priors' and box settings' home
    reference = OmegaConf.load(ROOT / "conf/simulation/reference.yaml")
    design = Design(
        priors=OmegaConf.to_container(reference.design.priors), n=n, base_seed=base_seed
    )
    points = [design.point(i) for i in range(n)]
    user = {
        **OmegaConf.to_container(reference.simulator.user_params),
        "HII_DIM": hii_dim,
        "BOX_LEN": box_len,
    }

    def spectra(power_spectrum: dict) -> tuple[np.ndarray, np.ndarray]:
        sim = CoevalSimulator(
            redshifts=[redshift], user_params=user, power_spectrum=power_spectrum
        )
        recs = [sim.run([p])[0] for p in points]
        failed = [r["error"] for r in recs if r["status"] != "ok"]
        if failed:
            raise RuntimeError(f"21cmFAST failed: {failed[0]}")
        return sim.k(), np.stack([r["delta"][0] for r in recs])

    k_ref, d_ref = spectra({})
    table = load_tables(tables_dir, [redshift])[float(redshift)] if tables_dir else None
    out = {
        "points": n,
        "redshift": redshift,
        "HII_DIM": hii_dim,
        "BOX_LEN": box_len,
        "base_seed": base_seed,
        "stored_bins": int(len(k_ref)),
        "binnings": {},
    }
    for name, ps in BINNINGS.items():
        k_new, d_direct = spectra(ps)
        d_mapped = regrid_log_k(k_ref, d_ref, k_new)
        use = (
            (k_new >= K_RANGE[0])
            & (k_new <= K_RANGE[1])
            & np.isfinite(d_mapped).all(axis=0)
            & np.isfinite(d_direct).all(axis=0)
        )
        direct, mapped = d_direct[:, use], d_mapped[:, use]
        positive = direct > 0
        rel = np.abs(mapped - direct)[positive] / direct[positive]
        row = {
            "bins_compared": int(use.sum()),
            "median_rel": float(np.median(rel)),
            "p90_rel": float(np.percentile(rel, 90)),
            "max_rel": float(rel.max()),
        }
        if table is not None:
            sigma = np.interp(k_new[use], *table)
            row["median_over_sigma"] = float(np.median(np.abs(mapped - direct) / sigma))
            row["p90_over_sigma"] = float(np.percentile(np.abs(mapped - direct) / sigma, 90))
        out["binnings"][name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--redshift", type=float, default=8.0)
    ap.add_argument("--hii-dim", type=int, default=50)
    ap.add_argument("--box-len", type=float, default=125.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.n < 1 or args.hii_dim < 10 or args.box_len <= 0:
        print("--n >= 1, --hii-dim >= 10 and --box-len > 0 are needed", file=sys.stderr)
        return 2
    result = measure(args.n, args.redshift, args.hii_dim, args.box_len)
    print(
        f"{result['points']} boxes, z = {result['redshift']:g}, HII_DIM {result['HII_DIM']}, "
        "BOX_LEN "
        f"{result['BOX_LEN']:g} Mpc; stored grid {result['stored_bins']} log bins; bins in "
        f"{K_RANGE} 1/Mpc"
    )
    print(
        f"{'grid':10s} {'bins':>5s} {'median':>8s} {'p90':>8s} {'max':>8s} {'med/σ':>8s} "
        f"{'p90/σ':>8s}"
    )
    for name, r in result["binnings"].items():
        print(
            f"{name:10s} {r['bins_compared']:5d} {r['median_rel']:8.3f} {r['p90_rel']:8.3f} "
            f"{r['max_rel']:8.3f} "
            f"{r.get('median_over_sigma', np.nan):8.3f} {r.get('p90_over_sigma', np.nan):8.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
