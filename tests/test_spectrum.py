"""astrops' spectra are 21CMMC's spectra: same numbers as the seed study's pipeline, bin for
bin."""

from __future__ import annotations

import os

import numpy as np
import pytest

from astrops.simulation import CoevalSimulator, Design
from astrops.simulation.coeval import private_21cmfast_cache

REF_USER = {"HII_DIM": 50, "BOX_LEN": 125, "USE_INTERPOLATION_TABLES": True}
# Partly ionized at z = 8 (x_HI ~ 0.57 for this seed), where the spectrum carries most information.
PARAMS = {"HII_EFF_FACTOR": 30.0, "ION_Tvir_MIN": 4.7, "R_BUBBLE_MAX": 15.0}
SEED = 12345


def seed_pipeline_delta(tmp_path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed study's path: CoreCoevalModule + Likelihood1DPowerCoeval(simulate=True) writing a
    datafile."""
    import py21cmfast as p21c
    from py21cmmc import CoreCoevalModule, Likelihood1DPowerCoeval, build_computation_chain

    old = p21c.config["direc"]
    p21c.config["direc"] = str(tmp_path)
    try:
        core = CoreCoevalModule(
            redshift=8.0,
            user_params=REF_USER,
            astro_params=PARAMS,
            initial_conditions_seed=seed,
            regenerate=True,
            cache_dir=str(tmp_path),
        )
        datafile = tmp_path / "seed.npz"
        build_computation_chain(
            core, Likelihood1DPowerCoeval(datafile=str(datafile), simulate=True)
        )
        with np.load(datafile) as z:
            return z["k"], z["delta"]
    finally:
        p21c.config["direc"] = old


@pytest.fixture(scope="module")
def single_z() -> tuple[CoevalSimulator, dict]:
    sim = CoevalSimulator(redshifts=[8.0], user_params=REF_USER)
    return sim, sim.run([{"index": 0, "params": PARAMS, "seed": SEED}])[0]


def test_spectrum_equals_21cmmc_path(tmp_path, single_z):
    sim, rec = single_z
    assert rec["status"] == "ok", rec["error"]
    assert 0.2 < rec["xH"][0] < 0.8, "the comparison must be made on a partly ionized box"
    k_seed, delta_seed = seed_pipeline_delta(tmp_path, SEED)
    ours = rec["delta"][0]
    assert ours.shape == delta_seed.shape == (22,)
    np.testing.assert_allclose(sim.k(), k_seed, rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(delta_seed))
    assert np.isnan(ours[:2]).all() and np.isfinite(ours[2:]).all()
    np.testing.assert_allclose(ours, delta_seed, rtol=1e-6, equal_nan=True)


def test_other_seed_gives_other_spectrum(single_z):
    sim, rec = single_z
    other = sim.run([{"index": 0, "params": PARAMS, "seed": SEED + 1}])[0]
    finite = np.isfinite(rec["delta"][0])
    rel = np.abs(other["delta"][0][finite] / rec["delta"][0][finite] - 1)
    assert rel.max() > 1e-2, "cosmic variance: another IC seed must change the spectrum"


def test_multi_redshift_z8_equals_single(single_z):
    _, rec = single_z
    multi = CoevalSimulator(redshifts=[7.0, 8.0, 9.0, 10.0], user_params=REF_USER)
    m = multi.run([{"index": 0, "params": PARAMS, "seed": SEED}])[0]
    assert m["delta"].shape == (4, 22)
    np.testing.assert_allclose(m["delta"][1], rec["delta"][0], rtol=1e-6, equal_nan=True)
    assert np.all(np.diff(m["xH"]) > 0), "the universe is more neutral at higher redshift"


def test_shared_initial_conditions_match_fresh_runs():
    sim = CoevalSimulator(redshifts=[8.0], user_params={"HII_DIM": 20, "BOX_LEN": 50})
    design = Design(
        priors={"HII_EFF_FACTOR": [20, 60], "ION_Tvir_MIN": [4.3, 5.0], "R_BUBBLE_MAX": [5, 15]},
        n=2,
        sims_per_ic=2,
    )
    points = [design.point(0), design.point(1)]
    assert points[0]["seed"] == points[1]["seed"]
    shared = sim.run(points)
    fresh = [sim.run([p])[0] for p in points]
    for a, b in zip(shared, fresh, strict=True):
        np.testing.assert_allclose(a["delta"], b["delta"], rtol=1e-6, equal_nan=True)


def test_failed_simulation_is_recorded_and_run_goes_on():
    sim = CoevalSimulator(redshifts=[8.0], user_params={"HII_DIM": 20, "BOX_LEN": 50})
    # > BOX_LEN/3: 21cmFAST refuses
    bad = {"index": 0, "params": {**PARAMS, "R_BUBBLE_MAX": 40.0}, "seed": 7}
    good = {"index": 1, "params": PARAMS, "seed": 7}
    recs = sim.run([bad]) + sim.run([good])
    assert recs[0]["status"] == "failed" and "R_BUBBLE_MAX" in recs[0]["error"]
    assert recs[1]["status"] == "ok" and recs[1]["delta"].shape == (1, len(sim.k()))


def test_21cmfast_cache_never_grows():
    import py21cmfast as p21c

    cache = p21c.config["direc"]
    before = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    sim = CoevalSimulator(redshifts=[8.0], user_params={"HII_DIM": 20, "BOX_LEN": 50})
    with private_21cmfast_cache() as tmp:
        assert p21c.config["direc"] == tmp
    assert not os.path.exists(tmp)
    sim.run([{"index": 0, "params": PARAMS, "seed": 3}])
    after = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    assert after == before
