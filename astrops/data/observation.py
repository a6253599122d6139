"""An instrument's view of a simulated spectrum: thermal noise and the k-range it measures.

The noise is applied as 21CMMC's ``Likelihood1DPowerCoeval`` applies a noise file (Greig & Mesinger
2015): the 1σ table ``errs(k)`` of each redshift is interpolated linearly onto the spectrum's
k-bins inside the table's own k-range — no extrapolation: a bin outside it is not measured and is
dropped — and only bins within ``[min_k, max_k]`` are used. The tables (21cmSense, thermal part
only: the simulated boxes carry their own cosmic variance) are made by ``make noise-tables``
(:mod:`astrops.simulation.sensitivity`).

An observation may name its own k-bins (``k_bins``, in ``k_units`` = ``1/Mpc`` or ``h/Mpc``,
converted with the simulations' own ``hlittle``): published band powers come on their own grids.
The stored spectra are then mapped onto those bins by interpolating Δ² linearly in log k between
the nearest stored bins (never extrapolated: a bin outside the stored finite range is refused in
one line); the error of that mapping on real boxes is measured by ``scripts/kgrid_error.py`` and
stated in docs/observations.md. ``min_k`` and ``max_k`` are always 1/Mpc, as in 21CMMC.

Training sees a fresh Gaussian realisation Δ²_obs = Δ² + σ·N(0, 1) every epoch (drawn on the device
by :class:`astrops.data.batches.DeviceBatches`), so one noiseless store serves every instrument;
validation and test use one fixed realisation per spectrum derived from ``data.split_seed``, so
runs compare on the same observations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astrops.errors import ObservationError
from astrops.simulation.sensitivity import load_tables, observation_metadata

# the fixed realisation's stream, apart from the split's (split_seed, split_seed + 1, ...)
NOISE_STREAM = 0x0B5
K_UNITS = ("1/Mpc", "h/Mpc")  # the units an observation's own k-bins may be given in


def regrid_log_k(k: np.ndarray, delta: np.ndarray, k_new: np.ndarray) -> np.ndarray:
    """Δ² (..., n_k) on centres ``k`` mapped onto ``k_new``: linear in log k between the two
    nearest bins that are finite in every spectrum; NaN at a ``k_new`` outside their range (never
    extrapolated)."""
    finite = np.isfinite(delta).reshape(-1, len(k)).all(axis=0)
    x, x_new = (
        np.log(np.asarray(k, dtype=np.float64)[finite]),
        np.log(np.asarray(k_new, dtype=np.float64)),
    )
    d = delta[..., finite]
    out = np.full((*delta.shape[:-1], len(x_new)), np.nan)
    inside = (x_new >= x[0]) & (x_new <= x[-1]) if len(x) > 1 else np.zeros(len(x_new), dtype=bool)
    j = np.clip(np.searchsorted(x, x_new[inside]), 1, len(x) - 1)
    w = (x_new[inside] - x[j - 1]) / (x[j] - x[j - 1])
    out[..., inside] = d[..., j - 1] * (1 - w) + d[..., j] * w
    return out


class Observation:
    """The noise tables and k-range of one ``conf/observation`` choice (``none`` is no
    Observation)."""

    def __init__(
        self,
        name: str,
        tables_dir: str,
        min_k: float | None = 0.1,
        max_k: float | None = 1.0,
        k_bins: list[float] | None = None,
        k_units: str = "1/Mpc",
    ):
        if k_units not in K_UNITS:
            raise ObservationError(
                f"observation.k_units={k_units!r}: choose one of {list(K_UNITS)}"
            )
        self.name, self.tables_dir = name, str(tables_dir)
        self.min_k = -np.inf if min_k is None else float(min_k)
        self.max_k = np.inf if max_k is None else float(max_k)
        # in k_units
        self.k_bins = None if k_bins is None else np.asarray(k_bins, dtype=np.float64)
        self.k_units = k_units
        self._metadata: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Observation | None:
        if not cfg or cfg.get("name") in (None, "none"):
            return None
        if cfg.get("kind") == "upper_limits":
            raise ObservationError(
                f"observation={cfg['name']} holds published upper limits, not noise tables a "
                "network can train or be scored with: use it with python -m astrops "
                "reference-limits; train with a noise-table observation (e.g. hera350_1000h)"
            )
        bins = cfg.get("k_bins")
        return cls(
            str(cfg["name"]),
            str(cfg["tables_dir"]),
            cfg.get("min_k"),
            cfg.get("max_k"),
            None if bins is None else [float(b) for b in bins],
            str(cfg.get("k_units") or "1/Mpc"),
        )

    def on_own_grid(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        cosmology: Mapping[str, Any] | None,
        dataset: str = "the dataset",
    ) -> tuple[np.ndarray, np.ndarray]:
        """(k, Δ²) on the observation's own k-bins [1/Mpc] (:func:`regrid_log_k`), or unchanged
        when it names none. ``cosmology`` is the simulations' ``cosmo_params``: its ``hlittle``
        converts h/Mpc bins."""
        if self.k_bins is None:
            return k, delta
        h = 1.0
        if self.k_units == "h/Mpc":
            h = (cosmology or {}).get("hlittle")
            if not isinstance(h, (int, float)) or not h > 0:
                raise ObservationError(
                    f"{dataset} does not record its cosmology's hlittle, so "
                    "k-bins in h/Mpc cannot "
                    "be converted: give observation.k_bins in 1/Mpc "
                    "(observation.k_units=1/Mpc)"
                )
        k_new = self.k_bins * float(h)
        out = regrid_log_k(k, delta, k_new)
        outside = ~np.isfinite(out).reshape(-1, len(k_new)).any(axis=0)
        # a band the simulations do not cover cannot be modelled: never dropped silently
        if outside.any():
            finite = k[np.isfinite(delta).reshape(-1, len(k)).all(axis=0)]
            span = f"{finite.min():.4g}-{finite.max():.4g} 1/Mpc" if len(finite) else "nothing"
            raise ObservationError(
                f"observation.k_bins {self.k_bins[outside].tolist()} "
                f"{self.k_units} lie outside the "
                "simulated k-range "
                f"({span}{f', h = {h:g}' if self.k_units == 'h/Mpc' else ''}): "
                "drop them or check observation.k_units"
            )
        return k_new, out

    def sigma(self, k: np.ndarray, redshifts: list[float]) -> np.ndarray:
        """(n_z, n_k) 1σ noise [mK²] on the spectrum's k-bins; NaN where the bin is not measured
        (outside the table's finite k-range or outside [min_k, max_k])."""
        tables = load_tables(self.tables_dir, redshifts)
        k = np.asarray(k, dtype=np.float64)
        out = np.full((len(redshifts), len(k)), np.nan)
        for i, z in enumerate(redshifts):
            k_tab, errs = tables[float(z)]
            inside = (
                (k >= k_tab.min()) & (k <= k_tab.max()) & (k >= self.min_k) & (k <= self.max_k)
            )
            out[i, inside] = np.interp(k[inside], k_tab, errs)
        return out

    def fixed_realisation(self, delta: np.ndarray, sigma: np.ndarray, seed: int) -> np.ndarray:
        """``delta`` (N, n_z, n_k) plus one Gaussian realisation of the noise, reproducible from
        ``seed``."""
        rng = np.random.default_rng([int(seed), NOISE_STREAM])
        return delta + np.nan_to_num(sigma) * rng.standard_normal(delta.shape)

    def metadata(self) -> dict[str, Any]:
        """Instrument, hours, foreground model and the tables' content hash (checkpoint, lineage,
        params); read once (the hash reads every table), and JSON-safe (an open k-range end is
        null, not infinity)."""
        if self._metadata is None:
            self._metadata = {
                **observation_metadata(self.name, self.tables_dir),
                "min_k": self.min_k if np.isfinite(self.min_k) else None,
                "max_k": self.max_k if np.isfinite(self.max_k) else None,
                "k_bins": None if self.k_bins is None else self.k_bins.tolist(),
                "k_units": self.k_units,
            }
        return self._metadata
