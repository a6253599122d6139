"""The design is defined per index: extending n or sharding never changes a point."""

import time
from itertools import islice

import numpy as np
import pytest

from astrops.errors import SimulationConfigError
from astrops.simulation import Design

PRIORS = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]}


def test_extending_n_keeps_the_first_points():
    small, big = Design(PRIORS, n=5), Design(PRIORS, n=50)
    for i in range(5):
        assert small.point(i) == big.point(i)


def test_points_lie_in_priors_and_seeds_differ():
    d = Design(PRIORS, n=200)
    pts = [d.point(i) for i in range(d.n)]
    for name, (lo, hi) in PRIORS.items():
        vals = np.array([p["params"][name] for p in pts])
        assert lo <= vals.min() and vals.max() <= hi
        assert vals.max() - vals.min() > 0.8 * (hi - lo)
    assert len({p["seed"] for p in pts}) == 200


def test_base_seed_changes_everything():
    a, b = Design(PRIORS, n=3, base_seed=1), Design(PRIORS, n=3, base_seed=2)
    assert all(a.point(i)["params"] != b.point(i)["params"] for i in range(3))
    assert all(a.point(i)["seed"] != b.point(i)["seed"] for i in range(3))


def test_shards_are_disjoint_and_cover_the_design():
    d = Design(PRIORS, n=23, sims_per_ic=2)
    parts = [d.indices(s, 4) for s in range(4)]
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(23))
    for p in parts:  # points sharing initial conditions stay in one shard
        assert all((i ^ 1) in p or (i ^ 1) >= 23 for i in p)


def test_sims_per_ic_shares_seeds_in_groups():
    d = Design(PRIORS, n=8, sims_per_ic=4)
    seeds = [d.point(i)["seed"] for i in range(8)]
    assert len(set(seeds[:4])) == 1 and len(set(seeds[4:])) == 1 and seeds[0] != seeds[4]


def test_latin_hypercube_stratifies_each_parameter():
    d = Design(PRIORS, n=10, sampler="lhs")
    u = np.array([d.unit(i) for i in range(10)])
    for j in range(3):
        assert sorted(np.floor(u[:, j] * 10).astype(int)) == list(range(10))


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"priors": {**PRIORS, "ION_Tvir_MIN": [6.0, 4.0]}}, "lower bound"),
        ({"n": 0}, "positive"),
        ({"sampler": "sobol"}, "choose one of"),
        ({"priors": {"HII_EFF_FACTOR": [5, 200]}}, "exactly"),
    ],
)
def test_bad_designs_are_refused(kw, msg):
    with pytest.raises(SimulationConfigError, match=msg):
        Design(**{"priors": PRIORS, "n": 4, **kw})


def test_shard_indices_equal_the_listing_they_replace():
    for n, k, shards in ((1, 1, 1), (23, 2, 4), (10, 3, 3), (7, 4, 2), (9, 3, 1)):
        d = Design(PRIORS, n=n, sims_per_ic=k)
        for s in range(shards):
            want = [i for i in range(n) if (i // k) % shards == s]
            got = d.indices(s, shards)
            assert list(got) == want and len(got) == len(want)
            assert all(i in got for i in want) and not any(
                i in got for i in set(range(-1, n + 1)) - set(want)
            )


def test_huge_uniform_design_is_lazy():
    """simulation.n=10**9 must not list the design: len, membership and the first points are
    instant."""
    t0 = time.perf_counter()
    d = Design(PRIORS, n=10**9, sims_per_ic=3)
    idx = d.indices(1, 2)
    # shard 1 of 2 holds IC groups 1, 3, 5, ...; the last group (index 10**9-1) is short
    first = list(islice(idx, 5))
    assert (
        first == [3, 4, 5, 9, 10]
        and len(idx) == 499_999_999
        and 10**9 - 1 in idx
        and 10**9 not in idx
    )
    assert (
        d.point(10**9 - 1)["params"]
        == Design(PRIORS, n=10**9 + 5, sims_per_ic=3).point(10**9 - 1)["params"]
    )
    assert time.perf_counter() - t0 < 1.0


def test_latin_hypercube_refuses_more_points_than_it_can_hold():
    # the limit itself is fine (the hypercube is built on first use)
    Design(PRIORS, n=10**6, sampler="lhs")
    with pytest.raises(
        SimulationConfigError,
        match=r"simulation.n=1000001 with simulation.sampler=lhs.*"
        r"use simulation.sampler=uniform",
    ):
        Design(PRIORS, n=10**6 + 1, sampler="lhs")
