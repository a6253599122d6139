"""A dataset's records as numpy arrays, and what they say about the design they were drawn from."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from astrops.errors import StoreError


@dataclass
class Records:
    """Columns of a dataset's records as numpy arrays (one row per simulation)."""

    keys: np.ndarray  # (N,) str
    params: np.ndarray  # (N, n_params) float64, columns in Dataset.parameters order
    seeds: np.ndarray  # (N,) int64, -1 where the IC seed is unknown (imported data)
    delta: np.ndarray  # (N, n_z, n_k) float64, mK^2
    xH: np.ndarray  # (N, n_z) global neutral fraction
    Tb: np.ndarray  # (N, n_z) mean brightness temperature, mK
    table: pa.Table  # everything else (status, error, design, versions, wall_time, ...)

    def __len__(self) -> int:
        return len(self.keys)

    def concat(self, other: Records) -> Records:
        """These records followed by ``other``'s (datasets of one configuration, e.g. training +
        held-out)."""
        return Records(
            *(
                np.concatenate([a, b])
                for a, b in zip(
                    (self.keys, self.params, self.seeds, self.delta, self.xH, self.Tb),
                    (other.keys, other.params, other.seeds, other.delta, other.xH, other.Tb),
                    strict=True,
                )
            ),
            table=pa.concat_tables([self.table, other.table], promote_options="default"),
        )

    def priors(self, parameters: list[str]) -> dict[str, list[float]]:
        """Each parameter's prior range ``[low, high]``, as the records' designs declare it.

        The design a record was drawn from travels with it (the ``design`` JSON column), so the
        priors have one home: the data. Records drawn from several designs give the union of their
        priors; a parameter no record declares a prior for (imported spectra, hand-made stores)
        gets the smallest and largest value the records hold. ``parameters`` names the ``params``
        columns, in order (``Dataset.parameters``).
        """
        lows: dict[str, float] = {}
        highs: dict[str, float] = {}
        designs = self.table["design"].to_pylist() if "design" in self.table.column_names else []
        # a few distinct designs among thousands of rows
        for text in sorted({d for d in designs if d}):
            for name, (lo, hi) in _declared_priors(text).items():
                lows[name] = min(lows.get(name, np.inf), lo)
                highs[name] = max(highs.get(name, -np.inf), hi)
        out = {}
        for j, name in enumerate(parameters):
            if name in lows:
                out[name] = [lows[name], highs[name]]
            elif len(self):
                out[name] = [float(self.params[:, j].min()), float(self.params[:, j].max())]
            else:
                raise ValueError(
                    f"no records and no declared prior for {name}: its range is unknown"
                )
        return out


def _declared_priors(text: str) -> dict[str, tuple[float, float]]:
    """The ``priors`` of one design record, checked: a damaged record is one StoreError line, not a
    crash."""
    try:
        declared = json.loads(text).get("priors") or {}
        out = {}
        for name, bounds in declared.items():
            lo, hi = (float(b) for b in bounds)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError
            out[str(name)] = (lo, hi)
        return out
    except (ValueError, TypeError, AttributeError):
        raise StoreError(
            f"a record's design declares malformed priors ({text[:200]}): each must be [low, "
            "high] "
            "with finite low < high; run `python -m astrops store verify` and re-simulate or "
            "re-import the damaged records"
        ) from None


def list_column(col: pa.ChunkedArray, shape: tuple[int, ...]) -> np.ndarray:
    """A list<float64> column of equal-length lists as one reshaped numpy array (no Python
    loop)."""
    if shape[0] == 0:
        return np.empty(shape)
    flat = pa.compute.list_flatten(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
    return flat.to_numpy(zero_copy_only=False).reshape(shape)
