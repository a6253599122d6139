"""Published band-power limits with window functions, in 21CMMC's layout, and a model put on them.

A release is one npz (HERA's H1C IDR3 ships inside 21CMMC as
``py21cmmc/data/HERA_H1C_IDR3.npz``): ``z_bands`` (the bands' redshifts), and per band
``band<z>`` (fields, n_k, 3) = [k (1/Mpc), Δ² (mK²), variance (mK⁴)], NaN-padded where a field has
fewer k-bins, ``wfband<z>`` (fields, n_k, n_kwf) the window functions and ``kwfband<z>`` (n_kwf,)
the k-values (1/Mpc) they act on. ``<z>`` is the band redshift rounded to one decimal, or to an
integer (``band8``, ``band10``): 21CMMC tries both, and so does :func:`load_bands`. Every field is
its own measurement with its own window; the likelihood multiplies them
(:mod:`astrops.reference.upper_limit`).

A model Δ²(k) at a band's redshift is interpolated linearly in k onto ``kwfband`` (21CMMC's
``Likelihood1DPowerLightconeUpper.reduce_data``, ``interp1d``) and the window then maps it onto
the measured bins: WΔ² per field. Any later release in the same layout works by naming its file.

References:
    HERA Collaboration (2023), ApJ 945, 124 (H1C IDR3 upper limits and their window functions).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrops.errors import ObservationError
from astrops.reference.upper_limit import band_fields


@dataclass(frozen=True)
class Band:
    """One band of a release: its redshift, limits (fields, n_k, 3), windows (fields, n_k,
    n_kwf) and the windows' k-values (n_kwf,) [1/Mpc]."""

    z: float
    limits: np.ndarray
    window: np.ndarray
    k_window: np.ndarray


def limits_path(spec: str) -> Path:
    """``<package>:<path inside it>`` (e.g. ``py21cmmc:data/HERA_H1C_IDR3.npz``: the installed
    package's own copy, found without importing it) or a file path."""
    package, sep, inner = str(spec).partition(":")
    if sep and package.isidentifier():
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ObservationError(
                f"observation.limits_file {spec!r}: package {package!r} is not installed: "
                "install it (make install) or give the file's path"
            )
        path = Path(list(found.submodule_search_locations)[0]) / inner
    else:
        path = Path(spec)
    if not path.is_file():
        raise ObservationError(
            f"observation.limits_file {spec!r}: no file at {path}: give an npz in 21CMMC's "
            "band-power layout"
        )
    return path


def _key(files: list[str], stem: str, z: float) -> str | None:
    for name in (f"{stem}{np.round(z, 1)}", f"{stem}{int(np.round(z))}"):
        if name in files:
            return name
    return None


def load_bands(spec: str) -> list[Band]:
    """Every band of the release ``spec`` (:func:`limits_path`), checked for the layout."""
    path = limits_path(spec)
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    if "z_bands" not in data:
        raise ObservationError(f"{path}: no 'z_bands': not 21CMMC's band-power layout")
    bands = []
    for z in np.atleast_1d(data["z_bands"]).astype(float):
        names = [_key(list(data), stem, z) for stem in ("band", "wfband", "kwfband")]
        if None in names:
            raise ObservationError(
                f"{path}: band z = {z:.4g} lacks band/wfband/kwfband arrays named "
                f"'<stem>{np.round(z, 1)}' or '<stem>{int(np.round(z))}'"
            )
        limits, window, k_window = (np.asarray(data[n], dtype=np.float64) for n in names)
        ok = (
            limits.ndim == 3
            and limits.shape[2] == 3
            and window.shape[:2] == limits.shape[:2]
            and window.shape[2] == len(k_window)
        )
        if not ok:
            raise ObservationError(
                f"{path}: band z = {z:.4g} has limits {limits.shape}, window {window.shape}, "
                f"k-values {k_window.shape}: need (fields, n_k, 3), (fields, n_k, n_kwf), (n_kwf,)"
            )
        bands.append(Band(float(z), limits, window, k_window))
    return bands


def on_window_k(k: np.ndarray, delta: np.ndarray, k_window: np.ndarray) -> np.ndarray:
    """Δ² (..., n_k) on centres ``k`` [1/Mpc] interpolated linearly in k onto ``k_window``, as
    21CMMC's ``interp1d``; bins not finite in every spectrum are skipped. Refused when
    ``k_window`` leaves the finite range (21CMMC would raise)."""
    k = np.asarray(k, dtype=np.float64)
    finite_at = np.isfinite(delta).reshape(-1, len(k))
    finite = finite_at.all(axis=0)
    if (finite_at.any(axis=0) & ~finite).any():  # one bad spectrum must not move the others
        raise ObservationError(
            "some spectra are NaN on k-bins the others measure: drop them or fill those bins"
        )
    kf, d = k[finite], np.asarray(delta, dtype=np.float64)[..., finite]
    if len(kf) < 2 or k_window.min() < kf[0] or k_window.max() > kf[-1]:
        span = f"{kf[0]:.4g}..{kf[-1]:.4g}" if len(kf) else "nothing"
        raise ObservationError(
            f"the model's finite k-range ({span} 1/Mpc) does not cover the window functions' "
            f"{k_window.min():.4g}..{k_window.max():.4g} 1/Mpc: simulate a box whose bins span it"
        )
    j = np.clip(np.searchsorted(kf, k_window), 1, len(kf) - 1)
    w = (k_window - kf[j - 1]) / (kf[j] - kf[j - 1])
    return d[..., j - 1] * (1 - w) + d[..., j] * w


def windowed(band: Band, model_kwf: np.ndarray) -> list[np.ndarray]:
    """Per field, the model (B, n_kwf) on the window's k-values after the window: (B, n_k) on
    that field's finite bins."""
    return [model_kwf @ w.T for *_, w in band_fields(band.limits, band.window)]
