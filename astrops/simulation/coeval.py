"""One simulation: 21cmFAST coeval boxes -> 21CMMC's spherically averaged power spectrum.

The power spectrum is computed by 21CMMC's own ``Likelihood1DPowerCoeval.compute_power`` (the code
the seed study's pipeline ran), not a re-implementation, so spectra are bit-compatible with
``CoreCoevalModule`` + ``Likelihood1DPowerCoeval(simulate=True)`` (tested).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np

from astrops.errors import SimulationConfigError
from astrops.parameters import NAMES

VARIED = NAMES  # the parameters a design varies: the three of astrops.parameters


def code_versions() -> dict[str, str]:
    """Versions recorded with every spectrum; 21cmFAST/21CMMC also enter the dataset hash."""
    return {
        "21cmFAST": version("21cmFAST"),
        "21CMMC": version("21cmMC"),
        "astrops": version("astrops"),
    }


@contextlib.contextmanager
def private_21cmfast_cache() -> Iterator[str]:
    """Point 21cmFAST's box cache at a temporary directory, removed afterwards.

    We run with ``write=False`` so nothing should land there; the private directory guarantees the
    user's ``~/21cmFAST-cache`` never grows even if a code path writes anyway.
    """
    import py21cmfast as p21c

    old = p21c.config["direc"]
    tmp = tempfile.mkdtemp(prefix="astrops-21cmfast-")
    p21c.config["direc"] = tmp
    try:
        yield tmp
    finally:
        p21c.config["direc"] = old
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class CoevalSimulator:
    """Everything about a simulation except the varied parameters and the seed.

    ``spec()`` is what identifies a dataset: all 21cmFAST inputs with their defaults filled in (so
    an explicit default hashes like an omitted one), the redshifts, the k-binning and code
    versions.
    """

    redshifts: list[float]
    user_params: dict[str, Any] = field(default_factory=dict)
    cosmo_params: dict[str, Any] = field(default_factory=dict)
    flag_options: dict[str, Any] = field(default_factory=dict)
    astro_params: dict[str, Any] = field(default_factory=dict)
    power_spectrum: dict[str, Any] = field(default_factory=dict)
    n_threads: int = 1

    def __post_init__(self) -> None:
        import py21cmfast as p21c

        self.redshifts = [float(z) for z in self.redshifts]
        if not self.redshifts:
            raise SimulationConfigError(
                "simulation.redshifts is empty: give at least one redshift, e.g. [8.0]"
            )
        for group, cls in (
            ("user_params", p21c.UserParams),
            ("cosmo_params", p21c.CosmoParams),
            ("flag_options", p21c.FlagOptions),
            ("astro_params", p21c.AstroParams),
        ):
            known = set(cls().self)
            unknown = set(getattr(self, group)) - known
            if unknown:
                raise SimulationConfigError(
                    f"unknown 21cmFAST {group} {sorted(unknown)}: valid names are {sorted(known)}"
                )
        varied_fixed = set(self.astro_params) & set(VARIED)
        if varied_fixed:
            raise SimulationConfigError(
                f"{sorted(varied_fixed)} are drawn from the priors: remove them from astro_params"
            )
        allowed_ps = {
            "n_psbins",
            "log_bins",
            "ignore_kperp_zero",
            "ignore_kpar_zero",
            "ignore_k_zero",
        }
        if set(self.power_spectrum) - allowed_ps:
            raise SimulationConfigError(
                f"unknown power_spectrum keys {sorted(set(self.power_spectrum) - allowed_ps)}: "
                f"valid are {sorted(allowed_ps)}"
            )

    # -- identity ---------------------------------------------------------------------------
    @property
    def box_len(self) -> float:
        return float(self._user().BOX_LEN)

    def _user(self, **extra):
        import py21cmfast as p21c

        return p21c.UserParams({**self.user_params, **extra})

    def ps_options(self) -> dict[str, Any]:
        """21CMMC's ``Likelihood1DPowerCoeval`` defaults, overridden by the config."""
        opts = {
            "n_psbins": None,
            "log_bins": True,
            "ignore_kperp_zero": True,
            "ignore_kpar_zero": False,
            "ignore_k_zero": False,
        }
        opts.update(self.power_spectrum)
        return opts

    def spec(self) -> dict[str, Any]:
        import py21cmfast as p21c

        user = dict(self._user().self)
        user.pop("N_THREADS", None)  # changes speed, not spectra
        astro = {
            k: v for k, v in p21c.AstroParams(self.astro_params).self.items() if k not in VARIED
        }
        versions = code_versions()
        return {
            "simulator": "21cmFAST.run_coeval+21CMMC.Likelihood1DPowerCoeval.compute_power",
            "redshifts": self.redshifts,
            "user_params": user,
            "cosmo_params": dict(p21c.CosmoParams(self.cosmo_params).self),
            "flag_options": dict(p21c.FlagOptions(self.flag_options).self),
            "astro_params_fixed": astro,
            "power_spectrum": self.ps_options(),
            "versions": {"21cmFAST": versions["21cmFAST"], "21CMMC": versions["21CMMC"]},
        }

    def default_name(self) -> str:
        u = self._user()
        zs = "-".join(f"{z:g}" for z in self.redshifts)
        return f"dim{u.HII_DIM}_box{u.BOX_LEN:g}_z{zs}"

    def k(self) -> np.ndarray:
        """The k-bin centres (1/Mpc), from the same binning code on an empty box."""
        n = self._user().HII_DIM
        _, k = self._power(np.zeros((n, n, n), dtype=np.float32))
        return k

    # -- running ----------------------------------------------------------------------------
    def _power(self, brightness_temp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from py21cmmc import Likelihood1DPowerCoeval

        o = self.ps_options()
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            power, k = Likelihood1DPowerCoeval.compute_power(
                brightness_temp,
                self.box_len,
                o["n_psbins"],
                log_bins=o["log_bins"],
                ignore_kperp_zero=o["ignore_kperp_zero"],
                ignore_kpar_zero=o["ignore_kpar_zero"],
                ignore_k_zero=o["ignore_k_zero"],
            )
        return power, k

    def delta(self, brightness_temp: np.ndarray) -> np.ndarray:
        """Dimensionless power Delta^2 = P k^3 / (2 pi^2) in mK^2, exactly as 21CMMC's
        reduce_data."""
        power, k = self._power(brightness_temp)
        return power * k**3 / (2 * np.pi**2)

    def run(self, points: list[dict]) -> list[dict]:
        """Simulate points sharing one IC seed; returns one record dict per point.

        With several points the initial conditions and perturbed fields are computed once and
        reused (``simulation.sims_per_ic``); 21cmFAST errors become failed records, the run goes
        on.
        """
        import py21cmfast as p21c

        user = self._user(N_THREADS=self.n_threads)
        common = dict(
            user_params=user,
            cosmo_params=self.cosmo_params,
            flag_options=self.flag_options,
            write=False,
            regenerate=True,
        )
        seed = int(points[0]["seed"])
        records, init_box, perturb = [], None, None
        with private_21cmfast_cache(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for point in points:
                t0 = time.perf_counter()
                rec = {**point, "versions": code_versions()}
                try:
                    if len(points) > 1 and init_box is None:
                        init_box = p21c.initial_conditions(
                            user_params=user,
                            cosmo_params=self.cosmo_params,
                            random_seed=seed,
                            write=False,
                            regenerate=True,
                        )
                        perturb = [
                            p21c.perturb_field(
                                redshift=z, init_boxes=init_box, write=False, regenerate=True
                            )
                            for z in self.redshifts
                        ]
                    coevals = p21c.run_coeval(
                        redshift=self.redshifts,
                        astro_params={**self.astro_params, **point["params"]},
                        random_seed=seed,
                        init_box=init_box,
                        perturb=perturb,
                        **common,
                    )
                    if not isinstance(coevals, list):
                        coevals = [coevals]
                    rec.update(
                        status="ok",
                        error="",
                        delta=np.stack([self.delta(c.brightness_temp) for c in coevals]),
                        xH=np.array([float(np.mean(c.xH_box)) for c in coevals]),
                        Tb=np.array([float(np.mean(c.brightness_temp)) for c in coevals]),
                    )
                # 21cmFAST raises many types; the record keeps the message
                except Exception as exc:
                    rec.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
                rec["wall_time"] = time.perf_counter() - t0
                records.append(rec)
        return records


def worker_init(n_threads: int) -> None:
    """Per-process set-up for simulation workers: keep OpenMP to the configured thread count."""
    os.environ["OMP_NUM_THREADS"] = str(n_threads)
