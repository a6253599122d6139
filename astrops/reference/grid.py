"""The reference posterior on a grid refined around its mass: exact up to the grid step, and fast when the
likelihood is an emulator evaluated for a whole grid at once (no sampler's chains to tune or to converge).

Stage 0 covers the prior box with n cells per parameter; each next stage covers the smallest box holding
all but ``tail`` of the previous stage's mass (padded by one of its cells) with n cells again, until every
parameter's step is at most σ_post / ``resolution`` (the issue's ≤ σ/5) or ``max_stages`` is reached — the
posterior then says which (``resolved``). The prior is uniform on the box, so the posterior is the
normalised likelihood; mass outside a refined box (< ``tail``) is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class GridPosterior:
    """Posterior mass on a regular grid: ``edges`` per parameter (n + 1,), ``mass`` (n, …, n) summing to 1."""

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
        return np.array([np.sqrt((self.marginal(j) * (c - m[j]) ** 2).sum()) for j, c in enumerate(self.centres)])

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
        return np.stack([e[i] + (e[i + 1] - e[i]) * rng.uniform(size=n) for e, i in zip(self.edges, idx, strict=True)],
                        axis=1)


def _evaluate(loglike: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
              n: int) -> tuple[list[np.ndarray], np.ndarray]:
    edges = [np.linspace(a, b, n + 1) for a, b in zip(lo, hi, strict=True)]
    centres = [(e[1:] + e[:-1]) / 2 for e in edges]
    mesh = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, len(lo))
    lnl = np.asarray(loglike(mesh), dtype=np.float64).reshape((n,) * len(lo))
    lnl = np.where(np.isfinite(lnl), lnl, -np.inf)
    mass = np.exp(lnl - lnl.max())
    return edges, mass / mass.sum()


def grid_posterior(loglike: Callable[[np.ndarray], np.ndarray], box: np.ndarray, n: int = 48,
                   resolution: float = 5.0, max_stages: int = 4, tail: float = 1e-3) -> GridPosterior:
    """Posterior of ``loglike`` ((B, P) points → (B,) ln L) under a uniform prior on ``box`` (P, 2)."""
    box = np.asarray(box, dtype=np.float64)
    lo, hi = box[:, 0].copy(), box[:, 1].copy()
    post = None
    for stage in range(max_stages):
        edges, mass = _evaluate(loglike, lo, hi, n)
        post = GridPosterior(edges, mass, False, stage + 1)
        step = (hi - lo) / n
        if np.all(step <= post.std() / resolution):
            post.resolved = True
            return post
        order = np.sort(mass.ravel())[::-1]
        cut = order[np.searchsorted(np.cumsum(order), 1 - tail)] if len(order) > 1 else order[0]
        keep = np.argwhere(mass >= cut)
        first, last = keep.min(0), keep.max(0)
        lo_new = np.maximum(np.array([e[max(i - 1, 0)] for e, i in zip(edges, first, strict=True)]), box[:, 0])
        hi_new = np.minimum(np.array([e[min(i + 2, n)] for e, i in zip(edges, last, strict=True)]), box[:, 1])
        if np.allclose(lo_new, lo) and np.allclose(hi_new, hi):  # the mass fills the box: finer needs a larger n
            return post
        lo, hi = lo_new, hi_new
    return post
