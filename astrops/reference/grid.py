"""The reference posterior on a grid refined around its mass: exact up to the grid step, and fast
when the likelihood is an emulator evaluated for a whole grid at once (no sampler's chains to tune
or to converge).

Stage 0 covers the prior box with n cells per parameter. Each next stage covers the bounding box of
the fewest cells that hold ≥ 1 − ``tail`` (99.9 %) of the current grid's posterior mass — the cells
that carry the mass, not a level set of the likelihood, which can miss a broad low plateau — padded
by two cells, with as many cells per parameter as a step of σ_post / ``resolution`` needs (at least
n, at most ``n_max``). A box whose kept cells touch a face that is not the prior's is widened there
and evaluated again. The posterior is ``resolved`` when every step is ≤ σ_post / ``resolution``
(or has ``n_max`` cells: a long tail) and mean and σ moved < 0.1 σ since the previous grid; after
``max_stages`` it is not, and says so (a caller reports it apart, never averages it in). The prior
is uniform on the box, so the posterior is the normalised likelihood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_CELLS = 36  # cells per parameter and stage (36³ ≈ 47 000 likelihood calls)
N_MAX = 72  # cells for a parameter whose kept mass spans many σ (a long tail)


@dataclass
class GridPosterior:
    """Posterior mass on a regular grid: ``edges`` per parameter (n + 1,), ``mass`` (n, …, n)
    summing to 1."""

    edges: list[np.ndarray]
    mass: np.ndarray
    resolved: bool
    stages: int

    @property
    def centres(self) -> list[np.ndarray]:
        return [(e[1:] + e[:-1]) / 2 for e in self.edges]

    def marginal(self, j: int) -> np.ndarray:
        axes = tuple(i for i in range(self.mass.ndim) if i != j)
        return self.mass.sum(axis=axes)

    def mean(self) -> np.ndarray:
        return np.array([(self.marginal(j) * c).sum() for j, c in enumerate(self.centres)])

    def std(self) -> np.ndarray:
        m = self.mean()
        return np.array(
            [
                np.sqrt((self.marginal(j) * (c - m[j]) ** 2).sum())
                for j, c in enumerate(self.centres)
            ]
        )

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """(len(q), P) marginal quantiles, the CDF linear within each cell."""
        q = np.atleast_1d(q)
        out = []
        for j, e in enumerate(self.edges):
            cdf = np.concatenate([[0.0], np.cumsum(self.marginal(j))])
            out.append(np.interp(q * cdf[-1], cdf, e))
        return np.stack(out, axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, P) draws: a cell by its mass, then uniformly within it."""
        flat = rng.choice(self.mass.size, size=n, p=self.mass.ravel() / self.mass.sum())
        idx = np.unravel_index(flat, self.mass.shape)
        return np.stack(
            [
                e[i] + (e[i + 1] - e[i]) * rng.uniform(size=n)
                for e, i in zip(self.edges, idx, strict=True)
            ],
            axis=1,
        )


def grid_points(
    lo: np.ndarray, hi: np.ndarray, n: int | np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """The cell edges per parameter and the cell centres (n_1·…·n_P, P) of a regular grid."""
    ns = np.broadcast_to(np.asarray(n, dtype=int), np.shape(lo))
    edges = [np.linspace(a, b, m + 1) for a, b, m in zip(lo, hi, ns, strict=True)]
    centres = [(e[1:] + e[:-1]) / 2 for e in edges]
    return edges, np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, len(edges))


def _evaluate(
    loglike: Callable[[np.ndarray], np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    n: int | np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray]:
    edges, mesh = grid_points(lo, hi, n)
    lnl = np.asarray(loglike(mesh), dtype=np.float64).reshape(tuple(len(e) - 1 for e in edges))
    lnl = np.where(np.isfinite(lnl), lnl, -np.inf)
    if not np.isfinite(lnl.max()):
        raise ValueError(
            "the likelihood is zero (or not finite) everywhere on the grid: check the data and "
            "noise"
        )
    return edges, lnl


def mass_cells(mass: np.ndarray, tail: float) -> np.ndarray:
    """Boolean mask of the fewest cells holding ≥ 1 − ``tail`` of ``mass`` (which sums to 1)."""
    flat = mass.ravel()
    order = np.argsort(flat)[::-1]
    n_keep = int(np.searchsorted(np.cumsum(flat[order]), 1 - tail) + 1)
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[: min(n_keep, flat.size)]] = True
    return keep.reshape(mass.shape)


def grid_posterior(
    loglike: Callable[[np.ndarray], np.ndarray],
    box: np.ndarray,
    n: int = N_CELLS,
    resolution: float = 5.0,
    max_stages: int = 8,
    tail: float = 1e-3,
    n_max: int = N_MAX,
) -> GridPosterior:
    """Posterior of ``loglike`` ((B, P) points → (B,) ln L) under a uniform prior on ``box`` (P,
    2); see the module docstring for the rule. A parameter whose kept mass spans more than
    ``n`` steps of σ / ``resolution`` (a long tail) gets more cells, up to ``n_max``."""
    box = np.asarray(box, dtype=np.float64)
    lo, hi = box[:, 0].copy(), box[:, 1].copy()
    ns = np.full(len(lo), n)
    post, previous = None, None
    for stage in range(max_stages):
        edges, lnl = _evaluate(loglike, lo, hi, ns)
        mass = np.exp(lnl - lnl.max())
        post = GridPosterior(edges, mass / mass.sum(), False, stage + 1)
        kept = mass_cells(post.mass, tail)
        widened = False
        for j in range(len(lo)):  # kept mass against a face that is not the prior's: widen it
            width = hi[j] - lo[j]
            if lo[j] > box[j, 0] and kept.take(0, axis=j).any():
                lo[j], widened = max(box[j, 0], lo[j] - width / 2), True
            if hi[j] < box[j, 1] and kept.take(ns[j] - 1, axis=j).any():
                hi[j], widened = min(box[j, 1], hi[j] + width / 2), True
        if widened:
            continue
        mean, std = post.mean(), post.std()
        steps_ok = (hi - lo) / ns <= std / resolution
        stable = (
            previous is not None
            and np.all(np.abs(mean - previous[0]) < 0.1 * std)
            and np.all(np.abs(std - previous[1]) < 0.1 * std)
        )
        idx = np.argwhere(kept)
        first, last = idx.min(0), idx.max(0)
        lo_new = np.maximum(
            [e[max(i - 2, 0)] for e, i in zip(edges, first, strict=True)], box[:, 0]
        )
        hi_new = np.minimum(
            [e[min(i + 3, len(e) - 1)] for e, i in zip(edges, last, strict=True)], box[:, 1]
        )
        # a long tail: n_max cells and a box that no longer shrinks is as fine as it gets
        capped = (ns >= n_max) & np.isclose(lo_new, lo) & np.isclose(hi_new, hi)
        if stable and np.all(steps_ok | capped):
            post.resolved = True
            return post
        lo, hi = lo_new, hi_new
        ns = np.clip(np.ceil(resolution * (hi - lo) / std).astype(int), n, n_max)
        previous = (mean, std)
    return post
