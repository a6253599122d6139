"""Thermal-noise tables of 21-cm interferometers, computed with 21cmSense, in 21CMMC's noise-file
format.

One table per (observation, redshift): the 1σ thermal-noise uncertainty of the spherically averaged
power spectrum Δ²(k), written as an npz with keys ``k`` [1/Mpc] and ``errs`` [mK²] (finite entries
only, k increasing): the format 21CMMC 1.0's ``Likelihood1DPowerCoeval(noisefile=...)`` reads and
checks (``_check_noise_format``) and interpolates linearly (``InterpolatedUnivariateSpline(k, errs,
k=1)``).

The calculation is 21cmSense 2.2.0 (Pober et al. 2013, AJ 145, 65; Pober et al. 2014, ApJ 782, 66;
https://github.com/rasg-affiliates/21cmSense), the newest release that supports numpy < 2: the
array's uv coverage from the antenna layout and a drift scan, the thermal noise per uv cell and k∥
mode, modes inside the foreground wedge excluded (``moderate``: horizon + 0.1 h/Mpc;
``optimistic``: the primary beam's first null), and the inverse-variance average to 1-D. 21cmSense
works in h/Mpc of its own cosmology (Planck15 here); ``k`` is converted to 1/Mpc with that
cosmology's H0.

Thermal part only (``calculate_sensitivity_1d(thermal=True, sample=False)``): each simulated
spectrum comes from one 125 Mpc box, whose own cosmic variance (sample variance) is already in the
data and is larger than a survey field's; adding 21cmSense's sample variance would count it twice.

``python -m astrops noise-tables <observation>|all [--out data/noise] [--force]`` writes
``<out>/<observation>/z<z>.npz`` (``make noise-tables``); existing tables are skipped, so it
resumes.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SENSE_VERSION = "2.2.0"  # the pinned 21cmSense the shipped tables were made with
REDSHIFTS = (7.0, 8.0, 9.0, 10.0)
HOURS_PER_DAY = 6.0  # hours observed per night (one LST window of a drift scan)
BANDWIDTH_MHZ = 8.0
N_CHANNELS = 82
HERA_LATITUDE_DEG = -30.72
TABLE_KEYS = ("k", "errs")  # 21CMMC's noise-file keys: k [1/Mpc], errs [mK², 1σ]


@dataclass(frozen=True)
class ObservationSpec:
    """One mock observation: instrument, total hours, 21cmSense foreground model, redshifts
    tabulated."""

    name: str
    instrument: str  # "HERA-350" or "SKA-Low" (see _observatory)
    hours: float
    foreground: str  # 21cmSense foreground_model: "moderate" or "optimistic"
    redshifts: tuple[float, ...] = REDSHIFTS

    @property
    def n_days(self) -> int:
        """Nights of HOURS_PER_DAY each: ``round(hours / 6)``."""
        return round(self.hours / HOURS_PER_DAY)


OBSERVATIONS: dict[str, ObservationSpec] = {
    s.name: s
    for s in (
        ObservationSpec("hera350_1000h", "HERA-350", 1000.0, "moderate"),
        ObservationSpec("hera350_100h", "HERA-350", 100.0, "moderate"),
        ObservationSpec("hera350_1000h_optimistic", "HERA-350", 1000.0, "optimistic"),
        ObservationSpec("ska_low_1000h", "SKA-Low", 1000.0, "moderate"),
    )
}


def spec(observation: str) -> ObservationSpec:
    """The specification of a named observation (``none`` has none: it adds no noise)."""
    try:
        return OBSERVATIONS[observation]
    except KeyError:
        raise ValueError(
            f"unknown observation {observation!r}: one of {sorted(OBSERVATIONS)}"
        ) from None


def table_name(z: float) -> str:
    """File name of the table at redshift z: ``z8.npz`` (``z7.5.npz`` for a non-integer z)."""
    return f"z{float(z):g}.npz"


def _observatory(instrument: str, z: float):
    """The 21cmSense Observatory of an instrument, its beam at the 21-cm frequency of redshift
    z."""
    import astropy.units as un
    from py21cmsense import GaussianBeam, Observatory, hera
    from py21cmsense.conversions import z2f

    frequency = z2f(z).to(un.MHz)
    if instrument == "HERA-350":  # split hex core (320 dishes of 14 m) + 30 outriggers
        return Observatory(
            antpos=hera(hex_num=11, split_core=True, outriggers=2, separation=14 * un.m),
            beam=GaussianBeam(frequency=frequency, dish_size=14 * un.m),
            latitude=HERA_LATITUDE_DEG * un.deg,
            Trcv=100 * un.K,
        )
    # built-in profile: 224 stations of 35 m, latitude -26.82°, Trcv 100 K
    if instrument == "SKA-Low":
        return Observatory.from_profile("SKA-LOW1-core", frequency=frequency)
    raise ValueError(f"unknown instrument {instrument!r}: HERA-350 or SKA-Low")


def power_spectrum_sensitivity(observation: str, z: float):
    """The 21cmSense ``PowerSpectrum`` of an observation at redshift z (nothing computed yet)."""
    import astropy.units as un
    import py21cmsense
    from py21cmsense import Observation, PowerSpectrum

    if py21cmsense.__version__ != SENSE_VERSION:
        raise RuntimeError(
            f"21cmSense {py21cmsense.__version__} found; the tables are defined with "
            f"{SENSE_VERSION}"
        )
    py21cmsense.config.PROGRESS = False
    s = spec(observation)
    obs = Observation(
        observatory=_observatory(s.instrument, z),
        time_per_day=HOURS_PER_DAY * un.hour,
        n_days=s.n_days,
        bandwidth=BANDWIDTH_MHZ * un.MHz,
        n_channels=N_CHANNELS,
    )
    return PowerSpectrum(observation=obs, foreground_model=s.foreground)


def noise_table(observation: str, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Thermal 1σ noise of Δ² at redshift z: ``(k [1/Mpc], errs [mK²])``, finite entries, k
    increasing.

    35-60 s and about 450 MB on one core.
    """
    import astropy.units as un
    from astropy.cosmology.units import with_H0

    ps = power_spectrum_sensitivity(observation, z)
    sigma = ps.calculate_sensitivity_1d(thermal=True, sample=False)
    # h/Mpc of 21cmSense's cosmology -> 1/Mpc
    k = ps.k1d.to_value(un.Mpc**-1, with_H0(ps.cosmo.H0))
    errs = sigma.to_value(un.mK**2)
    keep = np.isfinite(k) & np.isfinite(errs)
    return np.ascontiguousarray(k[keep], dtype=np.float64), np.ascontiguousarray(
        errs[keep], dtype=np.float64
    )


def save_table(path: str | os.PathLike, k: np.ndarray, errs: np.ndarray) -> None:
    """Write one table atomically (a hidden temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as fh:
        np.savez(fh, k=k, errs=errs)
    os.replace(tmp, path)


def load_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one table: ``(k [1/Mpc], errs [mK²])``."""
    with np.load(path, allow_pickle=False) as f:
        return np.asarray(f["k"], dtype=np.float64), np.asarray(f["errs"], dtype=np.float64)


def load_tables(
    tables_dir: str | os.PathLike, redshifts
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """The tables of a directory at the given redshifts (a missing one raises
    FileNotFoundError)."""
    out = {}
    for z in redshifts:
        path = Path(tables_dir) / table_name(z)
        if not path.is_file():
            raise FileNotFoundError(f"no noise table {path}: run `make noise-tables`")
        out[float(z)] = load_table(path)
    return out


def write_tables(
    observation: str, out_dir: str | os.PathLike, *, force: bool = False, redshifts=None, log=print
) -> list[Path]:
    """Compute and write the observation's tables into ``out_dir`` (its tables directory, e.g.
    ``data/noise/hera350_1000h``); tables already there are kept unless ``force``. Returns the
    paths."""
    s = spec(observation)
    paths = []
    for z in s.redshifts if redshifts is None else redshifts:
        path = Path(out_dir) / table_name(z)
        paths.append(path)
        if path.is_file() and not force:
            log(f"{observation} z={z:g}: {path} exists, skipped")
            continue
        t0 = time.perf_counter()
        k, errs = noise_table(observation, z)
        save_table(path, k, errs)
        log(
            f"{observation} z={z:g}: {len(k)} k-bins {k[0]:.3f}-{k[-1]:.3f} 1/Mpc -> {path} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    return paths


def tables_hash(tables_dir: str | os.PathLike) -> str:
    """sha256 of the tables' content (file names, dtypes, shapes and values of ``k`` and ``errs``
    of every ``z*.npz``, in name order): unlike the npz bytes (zip timestamps) it is the same for
    regenerated tables."""
    files = sorted(Path(tables_dir).glob("z*.npz"))
    if not files:
        raise FileNotFoundError(f"no noise tables (z*.npz) in {tables_dir}")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        with np.load(path, allow_pickle=False) as f:
            for key in TABLE_KEYS:
                a = np.ascontiguousarray(f[key], dtype="<f8")
                h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
                h.update(a.tobytes())
    return h.hexdigest()


def observation_metadata(observation: str, tables_dir: str | os.PathLike | None = None) -> dict:
    """What a checkpoint, MLflow params and the lineage record about the observation layer.

    ``none`` gives ``{"observation": "none"}``; otherwise instrument, hours, nights, foreground
    model, redshifts, the 21cmSense version and, with ``tables_dir``, the tables' content hash."""
    if observation in (None, "none"):
        return {"observation": "none"}
    s = spec(observation)
    meta = {k: v for k, v in asdict(s).items() if k != "name"}
    meta = {
        "observation": s.name,
        **meta,
        "n_days": s.n_days,
        "redshifts": list(s.redshifts),
        "sensitivity": f"21cmSense {SENSE_VERSION} thermal",
    }
    if tables_dir is not None:
        meta["tables_hash"] = tables_hash(tables_dir)
    return meta
