"""The reference posterior on a grid refined around its mass: exact up to the grid step, and fast
when the likelihood is an emulator evaluated for a whole grid at once (no sampler's chains to tune
or to converge).

Stage 0 covers the prior box with n cells per parameter; each next stage covers the smallest box
holding all but ``tail`` of the previous stage's mass (padded by one of its cells) with n cells
again, until every parameter's step is at most σ_post / ``resolution`` (the issue's ≤ σ/5) or
``max_stages`` is reached — the posterior then says which (``resolved``). The prior is uniform on
the box, so the posterior is the normalised likelihood; mass outside a refined box (< ``tail``) is
dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_CELLS = 36  # cells per parameter and stage (36³ ≈ 47 000 likelihood calls)


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


def _evaluate(
    loglike: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, n: int
) -> tuple[list[np.ndarray], np.ndarray]:
    edges = [np.linspace(a, b, n + 1) for a, b in zip(lo, hi, strict=True)]
    centres = [(e[1:] + e[:-1]) / 2 for e in edges]
    mesh = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, len(lo))
    lnl = np.asarray(loglike(mesh), dtype=np.float64).reshape((n,) * len(lo))
    lnl = np.where(np.isfinite(lnl), lnl, -np.inf)
    if not np.isfinite(lnl.max()):
        raise ValueError(
            "the likelihood is zero (or not finite) everywhere on the grid: check the data and "
            "noise"
        )
    return edges, lnl


def grid_posterior(
    loglike: Callable[[np.ndarray], np.ndarray],
    box: np.ndarray,
    n: int = N_CELLS,
    resolution: float = 5.0,
    max_stages: int = 6,
    drop: float = 4.5,
) -> GridPosterior:
    """Posterior of ``loglike`` ((B, P) points → (B,) ln L) under a uniform prior on ``box`` (P,
    2).

    Each refined box spans the cells within ``drop`` of the highest ln L (±3σ for a Gaussian), two
    cells wider on each side; a box whose face still holds such cells is widened by half its size
    and evaluated again (a ridge the coarser grid sampled poorly). ``resolved``: every step ≤
    σ_post / ``resolution``, no mass against a refined face, and mean and σ moved by less than 0.1
    σ since the previous grid (or the box no longer changes)."""
    box = np.asarray(box, dtype=np.float64)
    lo, hi = box[:, 0].copy(), box[:, 1].copy()
    post, previous = None, None
    for stage in range(max_stages):
        edges, lnl = _evaluate(loglike, lo, hi, n)
        mass = np.exp(lnl - lnl.max())
        post = GridPosterior(edges, mass / mass.sum(), False, stage + 1)
        high = lnl >= lnl.max() - drop
        widened = False
        for j in range(len(lo)):  # mass against a face that is not the prior's: widen that side
            width = hi[j] - lo[j]
            if lo[j] > box[j, 0] and high.take(0, axis=j).any():
                lo[j], widened = max(box[j, 0], lo[j] - width / 2), True
            if hi[j] < box[j, 1] and high.take(n - 1, axis=j).any():
                hi[j], widened = min(box[j, 1], hi[j] + width / 2), True
        if widened:
            previous = None
            continue
        mean, std = post.mean(), post.std()
        fine = np.all((hi - lo) / n <= std / resolution)
        stable = (
            previous is not None
            and np.all(np.abs(mean - previous[0]) < 0.1 * std)
            and np.all(np.abs(std - previous[1]) < 0.1 * std)
        )
        keep = np.argwhere(high)
        first, last = keep.min(0), keep.max(0)
        lo_new = np.maximum(
            [e[max(i - 2, 0)] for e, i in zip(edges, first, strict=True)], box[:, 0]
        )
        hi_new = np.minimum(
            [e[min(i + 3, n)] for e, i in zip(edges, last, strict=True)], box[:, 1]
        )
        same = np.allclose(lo_new, lo) and np.allclose(hi_new, hi)
        if fine and (stable or same):
            post.resolved = True
            return post
        if same and not fine:  # the mass fills the box: only a larger n resolves it
            return post
        previous, lo, hi = (mean, std), lo_new, hi_new
    return post
