"""The bundled reference dataset: complete, as documented, and its z = 8 slice is the single-z
reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from astrops.simulation import CoevalSimulator
from astrops.store import Store


@pytest.fixture(scope="module")
def reference():
    ds = Store(ROOT / "data" / "reference").dataset("reference")
    return ds, ds.load(include_failed=True)


def test_reference_is_complete_and_documented(reference):
    ds, r = reference
    assert len(r) >= 2000
    assert ds.redshifts == [7.0, 8.0, 9.0, 10.0] and len(ds.k) == 22
    assert ds.spec["user_params"]["HII_DIM"] == 50 and ds.spec["user_params"]["BOX_LEN"] == 125
    assert ds.spec["user_params"]["USE_INTERPOLATION_TABLES"] is True
    assert set(r.table["status"].to_pylist()) == {"ok"}
    assert np.isnan(r.delta[:, :, :2]).all() and np.isfinite(r.delta[:, :, 2:]).all()
    assert len(set(r.seeds.tolist())) == len(r), "every simulation has its own IC seed"
    assert (r.seeds < 2**31).all()
    lo, hi = r.params.min(0), r.params.max(0)
    assert (lo >= [5, 4, 5]).all() and (hi <= [200, 6, 20]).all()
    assert len(ds.record_files()) == 1, "the shipped dataset is compacted"
    assert (ROOT / "data" / "reference" / "PROVENANCE.md").read_text().count(ds.hash) == 1


def test_reference_z8_is_the_single_redshift_spectrum(reference):
    ds, r = reference
    xH8 = r.xH[:, 1]
    i = int(np.argmin(np.abs(xH8 - 0.5)))  # a partly ionized box
    sim = CoevalSimulator(
        redshifts=[8.0],
        user_params={"HII_DIM": 50, "BOX_LEN": 125, "USE_INTERPOLATION_TABLES": True},
    )
    params = dict(zip(ds.parameters, r.params[i].tolist(), strict=True))
    fresh = sim.run([{"index": 0, "params": params, "seed": int(r.seeds[i])}])[0]
    np.testing.assert_allclose(fresh["delta"][0], r.delta[i, 1], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(fresh["xH"][0], xH8[i], rtol=1e-6)
