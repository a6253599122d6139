"""The experimental design: which parameters and which initial-conditions seed each simulation
gets.

Uniform draws are defined per index (a generator seeded by ``(base_seed, index)``), so the first n
points of a design never change when n grows, shards can draw their part independently, and a
rerun recomputes exactly the same points. A Latin hypercube is a property of the whole set and so
depends on n: extending it gives a different design (its identity includes n).

``sampler=fixed`` simulates a given list of parameter points, each with n / len(points)
initial-condition seeds (point i of the list at indices i·m … i·m + m − 1): the seed-averaged
spectrum of a fixed θ and its cosmic variance, what an emulator of the simulator is checked
against.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from astrops.errors import SimulationConfigError
from astrops.simulation.coeval import VARIED

SAMPLERS = ("uniform", "lhs", "fixed")
_PARAM_STREAM, _SEED_STREAM, _LHS_STREAM = 0, 1, 2
# a Latin hypercube is built whole in memory (n x 3 floats) and cannot be streamed
MAX_LHS_N = 10**6


class ShardIndices:
    """The design indices of one shard, computed on demand: any n costs O(1) memory.

    Indices are dealt by IC group (``index // sims_per_ic``) round-robin over the shards, so points
    sharing initial conditions land in the same job. Iteration is in increasing index order;
    ``len`` and ``in`` are arithmetic, so a design of 10**9 points is never listed.
    """

    def __init__(self, n: int, sims_per_ic: int, shard: int, num_shards: int):
        self.n, self.k, self.shard, self.num_shards = n, sims_per_ic, shard, num_shards
        self._n_groups = -(-n // sims_per_ic)

    def __iter__(self) -> Iterator[int]:
        for g in range(self.shard, self._n_groups, self.num_shards):
            yield from range(g * self.k, min((g + 1) * self.k, self.n))

    def __len__(self) -> int:
        groups = len(range(self.shard, self._n_groups, self.num_shards))
        last = self._n_groups - 1
        short = (self._n_groups * self.k - self.n) if last % self.num_shards == self.shard else 0
        return groups * self.k - short

    def __contains__(self, index: object) -> bool:
        return (
            isinstance(index, int | np.integer)
            and 0 <= index < self.n
            and (int(index) // self.k) % self.num_shards == self.shard
        )

    def __repr__(self) -> str:
        return (
            f"ShardIndices(n={self.n}, sims_per_ic={self.k}, shard={self.shard}/{self.num_shards})"
        )


@dataclass
class Design:
    """Priors, sampler and seeds of a set of simulations.

    ``sims_per_ic=K`` lets K consecutive indices share one initial-conditions realisation (faster,
    but only n/K independent cosmic-variance samples); the default 1 gives every simulation its
    own.
    """

    priors: dict[str, list[float]]
    n: int
    base_seed: int = 1
    sampler: str = "uniform"
    sims_per_ic: int = 1
    points: list[list[float]] | None = None  # sampler=fixed: parameter points in VARIED order
    _lhs: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.priors = {k: [float(v[0]), float(v[1])] for k, v in self.priors.items()}
        if set(self.priors) != set(VARIED):
            raise SimulationConfigError(
                f"simulation.priors must give exactly {list(VARIED)}, got {sorted(self.priors)}"
            )
        for name, (lo, hi) in self.priors.items():
            if not lo < hi:
                raise SimulationConfigError(
                    f"prior {name}: lower bound {lo} is not below upper bound {hi}: swap or fix "
                    "them"
                )
        if not isinstance(self.n, int) or self.n <= 0:
            raise SimulationConfigError(
                f"simulation.n={self.n}: the number of simulations must be a positive integer"
            )
        if self.sampler not in SAMPLERS:
            raise SimulationConfigError(
                f"simulation.sampler={self.sampler!r}: choose one of {list(SAMPLERS)}"
            )
        if self.sampler == "lhs" and self.n > MAX_LHS_N:
            raise SimulationConfigError(
                f"simulation.n={self.n} with simulation.sampler=lhs: a Latin hypercube is built "
                "whole in memory, "
                f"at most {MAX_LHS_N} points; use simulation.sampler=uniform (drawn per index, "
                "any n) or a smaller n"
            )
        if self.sampler == "fixed":
            self._check_points()
        elif self.points:
            raise SimulationConfigError(
                f"simulation.points is for simulation.sampler=fixed, not {self.sampler!r}: "
                "drop the points or set simulation.sampler=fixed"
            )
        if self.sims_per_ic < 1:
            raise SimulationConfigError(f"simulation.sims_per_ic={self.sims_per_ic}: must be >= 1")
        if not 0 <= self.base_seed < 2**32:
            raise SimulationConfigError(
                f"simulation.base_seed={self.base_seed}: must be in [0, 2**32)"
            )

    def _check_points(self) -> None:
        pts = self.points or []
        if self.sims_per_ic != 1:
            raise SimulationConfigError(
                f"simulation.sampler=fixed with simulation.sims_per_ic={self.sims_per_ic} would "
                "repeat one θ on one IC seed: set simulation.sims_per_ic=1"
            )
        ok = isinstance(pts, list | tuple) and all(
            isinstance(p, list | tuple)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
            for p in pts
        )
        if not pts or not ok or any(len(p) != len(VARIED) for p in pts):
            raise SimulationConfigError(
                "simulation.sampler=fixed needs simulation.points: a list of "
                f"[{', '.join(VARIED)}] "
                "triples, e.g. [[30,4.7,15],[60,5.0,10]]"
            )
        if self.n % len(pts):
            raise SimulationConfigError(
                f"simulation.n={self.n} is not a multiple of the {len(pts)} fixed points: give "
                f"n = {len(pts)} x seeds per point (e.g. {30 * len(pts)})"
            )
        for p in pts:
            for value, name in zip(p, VARIED, strict=True):
                lo, hi = self.priors[name]
                if not lo <= float(value) <= hi:
                    raise SimulationConfigError(
                        f"simulation.points: {name}={value} outside the prior [{lo}, {hi}]"
                    )
        self.points = [[float(v) for v in p] for p in pts]

    def _fixed(self, index: int) -> list[float]:
        """sampler=fixed: the point of design index ``index`` (each point takes n / len(points)
        consecutive indices)."""
        return self.points[index // (self.n // len(self.points))]

    def check_physical(self, box_len: float) -> None:
        """Refuse priors 21cmFAST rejects or that leave its calibrated range, before any work."""
        zlo, _ = self.priors["HII_EFF_FACTOR"]
        if zlo < 5:
            raise SimulationConfigError(
                f"prior HII_EFF_FACTOR lower bound {zlo} < 5: 21CMMC's documented range starts at "
                "5"
            )
        _, rhi = self.priors["R_BUBBLE_MAX"]
        rlo, _ = self.priors["R_BUBBLE_MAX"]
        if rlo <= 0 or rhi > box_len / 3:
            raise SimulationConfigError(
                f"prior R_BUBBLE_MAX [{rlo}, {rhi}] Mpc: must be > 0 and <= BOX_LEN/3 = "
                f"{box_len / 3:.4g} Mpc "
                f"(21cmFAST refuses larger): lower the bound or enlarge BOX_LEN"
            )
        tlo, thi = self.priors["ION_Tvir_MIN"]
        if tlo < 4 or thi > 6:
            raise SimulationConfigError(
                f"prior ION_Tvir_MIN [{tlo}, {thi}] is log10(K) outside [4, 6] (atomic cooling .. "
                "rare massive halos): "
                f"use values within [4, 6]"
            )

    def identity(self) -> dict:
        """Recorded with every record; n only matters for the Latin hypercube."""
        d = {
            "priors": self.priors,
            "sampler": self.sampler,
            "base_seed": self.base_seed,
            "sims_per_ic": self.sims_per_ic,
        }
        if self.sampler == "lhs":
            d["n"] = self.n
        if self.sampler == "fixed":
            d.update(n=self.n, points=self.points)
        return d

    def ic_seed(self, index: int) -> int:
        """Initial-conditions seed of a design point, derived from (base_seed, index //
        sims_per_ic)."""
        group = index // self.sims_per_ic
        state = np.random.SeedSequence([self.base_seed, _SEED_STREAM, group]).generate_state(1)[0]
        return int(state % (2**31 - 1)) + 1

    def unit(self, index: int) -> np.ndarray:
        """The point in the unit cube, in VARIED order."""
        if self.sampler == "uniform":
            return np.random.default_rng([self.base_seed, _PARAM_STREAM, index]).random(
                len(VARIED)
            )
        if self.sampler == "fixed":
            lo, hi = (np.array([self.priors[v][i] for v in VARIED]) for i in (0, 1))
            return (np.asarray(self._fixed(index)) - lo) / (hi - lo)
        if self._lhs is None:
            from scipy.stats import qmc

            self._lhs = qmc.LatinHypercube(
                d=len(VARIED), seed=np.random.default_rng([self.base_seed, _LHS_STREAM])
            ).random(self.n)
        return self._lhs[index]

    def point(self, index: int) -> dict:
        """A design point as the record fields the simulator and the store need."""
        # exactly the given values, not a round trip through the unit cube
        if self.sampler == "fixed":
            params = dict(zip(VARIED, self._fixed(index), strict=True))
        else:
            u = self.unit(index)
            params = {
                name: self.priors[name][0]
                + (self.priors[name][1] - self.priors[name][0]) * float(u[i])
                for i, name in enumerate(VARIED)
            }
        return {
            "index": index,
            "params": params,
            "seed": self.ic_seed(index),
            "design": self.identity(),
        }

    def indices(self, shard: int = 0, num_shards: int = 1) -> ShardIndices:
        """This shard's part of the design: disjoint, deterministic, together the whole design.

        Lazy (see :class:`ShardIndices`) so that a huge n neither allocates nor delays the first
        simulation. Sharding is by IC group so that points sharing initial conditions land in the
        same job.
        """
        if num_shards < 1 or not 0 <= shard < num_shards:
            raise SimulationConfigError(
                f"simulation.shard={shard} must be in [0, num_shards={num_shards})"
            )
        return ShardIndices(self.n, self.sims_per_ic, shard, num_shards)
