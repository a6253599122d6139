"""An instrument's view of a simulated spectrum: thermal noise and the k-range it measures.

The noise is applied as 21CMMC's ``Likelihood1DPowerCoeval`` applies a noise file (Greig & Mesinger
2015): the 1σ table ``errs(k)`` of each redshift is interpolated linearly onto the spectrum's k-bins inside
the table's own k-range — no extrapolation: a bin outside it is not measured and is dropped — and only
bins within ``[min_k, max_k]`` are used. The tables (21cmSense, thermal part only: the simulated boxes
carry their own cosmic variance) are made by ``make noise-tables`` (:mod:`astrops.simulation.sensitivity`).

Training sees a fresh Gaussian realisation Δ²_obs = Δ² + σ·N(0, 1) every epoch (drawn on the device by
:class:`astrops.data.splits.DeviceBatches`), so one noiseless store serves every instrument; validation
and test use one fixed realisation per spectrum derived from ``data.split_seed``, so runs compare on the
same observations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astrops.simulation.sensitivity import load_tables, observation_metadata

NOISE_STREAM = 0x0B5  # the fixed realisation's stream, apart from the split's (split_seed, split_seed + 1, ...)


class Observation:
    """The noise tables and k-range of one ``conf/observation`` choice (``none`` is no Observation)."""

    def __init__(self, name: str, tables_dir: str, min_k: float | None = 0.1, max_k: float | None = 1.0):
        self.name, self.tables_dir = name, str(tables_dir)
        self.min_k = -np.inf if min_k is None else float(min_k)
        self.max_k = np.inf if max_k is None else float(max_k)
        self._metadata: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Observation | None:
        if not cfg or cfg.get("name") in (None, "none"):
            return None
        return cls(str(cfg["name"]), str(cfg["tables_dir"]), cfg.get("min_k"), cfg.get("max_k"))

    def sigma(self, k: np.ndarray, redshifts: list[float]) -> np.ndarray:
        """(n_z, n_k) 1σ noise [mK²] on the spectrum's k-bins; NaN where the bin is not measured (outside
        the table's finite k-range or outside [min_k, max_k])."""
        tables = load_tables(self.tables_dir, redshifts)
        k = np.asarray(k, dtype=np.float64)
        out = np.full((len(redshifts), len(k)), np.nan)
        for i, z in enumerate(redshifts):
            k_tab, errs = tables[float(z)]
            inside = (k >= k_tab.min()) & (k <= k_tab.max()) & (k >= self.min_k) & (k <= self.max_k)
            out[i, inside] = np.interp(k[inside], k_tab, errs)
        return out

    def fixed_realisation(self, delta: np.ndarray, sigma: np.ndarray, seed: int) -> np.ndarray:
        """``delta`` (N, n_z, n_k) plus one Gaussian realisation of the noise, reproducible from ``seed``."""
        rng = np.random.default_rng([int(seed), NOISE_STREAM])
        return delta + np.nan_to_num(sigma) * rng.standard_normal(delta.shape)

    def metadata(self) -> dict[str, Any]:
        """Instrument, hours, foreground model and the tables' content hash (checkpoint, lineage, params);
        read once (the hash reads every table), and JSON-safe (an open k-range end is null, not infinity)."""
        if self._metadata is None:
            self._metadata = {**observation_metadata(self.name, self.tables_dir),
                              "min_k": self.min_k if np.isfinite(self.min_k) else None,
                              "max_k": self.max_k if np.isfinite(self.max_k) else None}
        return self._metadata
