"""The data module: cleaning from the data, deterministic stratified splits, principled log
floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

from astrops.data import DeviceBatches, SpectraDataModule
from astrops.errors import DataConfigError
from astrops.models import CNNBackbone, DenseBackbone
from astrops.store import Store

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
K = np.geomspace(0.05, 2.0, 12)
RANGES = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]}


def toy_store(
    root,
    n=300,
    nan_bins=(0, 5),
    redshifts=(8.0, 9.0),
    zero_frac=0.15,
    seed=0,
    sims_per_ic=1,
    spec_seed=None,
    ic_offset=0,
    name="toy",
    xH=None,
    priors=RANGES,
):
    """Spectra with a known dependence on the parameters; some fully ionized (all zero).

    Each record carries its design's ``priors`` (None: none, as for imported spectra), as
    simulate.py writes them.
    """
    rng = np.random.default_rng(seed)
    ds = Store(root).create_dataset(
        name, {"toy": seed if spec_seed is None else spec_seed}, PARAMS, list(redshifts), K
    )
    rows = []
    for i in range(n):
        p = np.array([rng.uniform(5, 200), rng.uniform(4, 6), rng.uniform(5, 20)])
        delta = np.outer(
            1 + np.arange(len(redshifts)), 10 ** (p[1] - 4) * (K / K[0]) ** 0.3 * (1 + p[0] / 100)
        )
        if rng.random() < zero_frac:
            delta[:] = 0.0
        delta[:, list(nan_bins)] = np.nan
        rows.append(
            {
                "params": dict(zip(PARAMS, p, strict=True)),
                "seed": ic_offset + i // sims_per_ic,
                "delta": delta,
                "index": i,
                **({"xH": xH[i]} if xH is not None else {}),
                **({"design": {"priors": priors}} if priors is not None else {}),
            }
        )
    ds.append(rows)
    return ds


def dm(root, **kw):
    m = SpectraDataModule(str(root), **kw)
    m.prepare()
    return m


def test_non_finite_bins_are_found_in_the_data(tmp_path):
    toy_store(tmp_path, nan_bins=(0, 5))
    m = dm(tmp_path)
    assert m.kept_bins.tolist() == [i for i in range(12) if i not in (0, 5)]
    assert m.input_shape == (1, 10)


def test_bins_nan_in_only_some_spectra_are_refused(tmp_path):
    ds = toy_store(tmp_path, n=20, nan_bins=(0,))
    bad = np.ones((2, 12))
    bad[0, 3] = np.nan
    ds.append(
        [
            {
                "params": {"HII_EFF_FACTOR": 50, "ION_Tvir_MIN": 5, "R_BUBBLE_MAX": 10},
                "seed": 999,
                "delta": bad,
            }
        ]
    )
    with pytest.raises(DataConfigError, match="finite in some spectra"):
        dm(tmp_path)


def test_split_is_deterministic_disjoint_and_independent_of_training_seed(tmp_path):
    toy_store(tmp_path)
    a, b = dm(tmp_path), dm(tmp_path)
    torch.manual_seed(99)  # the training seed must not matter
    c = dm(tmp_path)
    for x in (b, c):
        assert np.array_equal(a.test_idx, x.test_idx) and np.array_equal(a.train_idx, x.train_idx)
    parts = [set(a.train_idx), set(a.val_idx), set(a.test_idx)]
    assert sum(map(len, parts)) == 300 and len(set.union(*parts)) == 300
    assert abs(len(a.test_idx) - 60) <= 25  # ~20 % per stratum
    other = dm(tmp_path, split_seed=1)
    assert not np.array_equal(a.test_idx, other.test_idx)
    assert a.lineage()["test_hash"] != other.lineage()["test_hash"]


def test_split_is_stratified_on_zeta_class(tmp_path):
    toy_store(tmp_path, n=600)
    m = dm(tmp_path, n_classes=5)
    cls = np.clip(((m.params[:, 0] - 5) / 39).astype(int), 0, 4)
    frac = np.array([np.isin(np.flatnonzero(cls == c), m.test_idx).mean() for c in range(5)])
    assert np.all(np.abs(frac - 0.2) < 0.03), frac


def test_kfold_covers_everything_once(tmp_path):
    toy_store(tmp_path)
    tests = [dm(tmp_path, kfold=4, fold=f).test_idx for f in range(4)]
    allt = np.concatenate(tests)
    assert sorted(allt.tolist()) == list(range(300))
    with pytest.raises(DataConfigError, match="kfold"):
        SpectraDataModule(str(tmp_path), kfold=4, fold=4)


def test_train_size_gives_nested_subsets_and_same_test_set(tmp_path):
    toy_store(tmp_path)
    full, small, smaller = dm(tmp_path), dm(tmp_path, train_size=100), dm(tmp_path, train_size=40)
    assert len(small.train_idx) == 100 and len(smaller.train_idx) == 40
    assert set(smaller.train_idx) <= set(small.train_idx) <= set(full.train_idx)
    assert np.array_equal(full.test_idx, smaller.test_idx)


def test_zero_spectra_get_finite_features_and_do_not_dominate_scaling(tmp_path):
    toy_store(tmp_path, zero_frac=0.15)
    m = dm(tmp_path)
    x = torch.as_tensor(np.nan_to_num(m.delta), dtype=torch.float32)
    f = m.transform(x)
    assert torch.isfinite(f).all()
    zero = (np.nan_to_num(m.delta) == 0).all(axis=(1, 2))
    assert zero.any()
    z = f[torch.as_tensor(zero)]
    assert torch.allclose(z, z[0].expand_as(z))  # all ionized spectra map to one point
    signal = f[torch.as_tensor(~zero)]
    assert signal.std(0).min() > 0.3  # the informative spectra keep most of the unit variance


def test_raw_transform_without_scaling_is_the_identity_on_kept_bins(tmp_path):
    toy_store(tmp_path)
    m = dm(tmp_path, feature_transform="raw", standardize_features=False)
    x = torch.as_tensor(np.nan_to_num(m.delta), dtype=torch.float32)
    assert torch.allclose(m.transform(x), x[:, :, torch.as_tensor(m.kept_bins)])


def test_class_edges_span_the_priors_the_design_records(tmp_path):
    toy_store(tmp_path, priors={**RANGES, "HII_EFF_FACTOR": [1.0, 300.0]})
    m = dm(tmp_path)
    assert m.ranges.tolist() == [[1.0, 300.0], [4.0, 6.0], [5.0, 20.0]]
    assert m.edges[0, 0] == 1.0 and m.edges[0, -1] == 300.0 and m.edges.shape == (3, 26)


def test_records_outside_the_recorded_priors_are_refused(tmp_path):
    ds = toy_store(tmp_path)  # simulated: priors recorded
    ds.append(
        [
            {
                "params": {"HII_EFF_FACTOR": 250.0, "ION_Tvir_MIN": 5, "R_BUBBLE_MAX": 10},
                "seed": 999,
                # imported without a config: no priors, beyond the others'
                "delta": np.ones((2, 12)),
            }
        ]
    )
    with pytest.raises(
        DataConfigError,
        match=r"1 records have \['HII_EFF_FACTOR'\] outside the priors .*"
        r"import such spectra with a simulation config",
    ):
        dm(tmp_path)


def test_informative_test_mask_or_none_with_a_warning(tmp_path, caplog):
    toy_store(tmp_path, n=200)  # x̄_HI unknown (NaN): nothing is informative
    m = dm(tmp_path, redshifts=[8.0, 9.0])
    m.xH[m.test_idx[[0, 5, 7]], 1] = 0.5  # three test boxes partly ionized at z = 9 only
    m.xH[m.train_idx[:4], 0] = 0.5  # training ones do not count
    keep = m.informative_test_mask()
    assert (
        keep.dtype == bool
        and keep.shape == m.test_idx.shape
        and np.flatnonzero(keep).tolist() == [0, 5, 7]
    )
    with caplog.at_level("WARNING", logger="astrops"):
        assert m.informative_test_mask(minimum=4) is None
        assert dm(tmp_path).informative_test_mask() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and warnings[0].startswith("3 of ") and "fewer than 4" in warnings[0]
    assert warnings[1].startswith(f"0 of {len(m.test_idx)} test spectra")


def test_multi_redshift_shapes_for_both_backbones(tmp_path):
    toy_store(tmp_path, redshifts=(8.0, 9.0))
    m = dm(tmp_path, redshifts=[8.0, 9.0])
    assert m.input_shape == (2, 10)
    x = m.transform(torch.as_tensor(np.nan_to_num(m.delta[:4]), dtype=torch.float32))
    assert x.shape == (4, 2, 10)
    assert DenseBackbone(m.input_shape)(x).shape == (4, 32)
    assert CNNBackbone(m.input_shape)(x).shape == (4, 64)
    with pytest.raises(DataConfigError, match=r"data.redshifts \[7.0\]"):
        dm(tmp_path, redshifts=[7.0])


def test_device_batches_cover_each_rank_disjointly():
    x, y = torch.arange(10.0)[:, None], torch.arange(10.0)[:, None]
    seen = [
        torch.cat([b[0] for b in DeviceBatches(x, y, 3, True, seed=1, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert len(seen[0]) == len(seen[1]) == 5
    assert set(seen[0].flatten().tolist()).isdisjoint(seen[1].flatten().tolist())
    evals = [
        torch.cat([b[0] for b in DeviceBatches(x, y, 4, False, rank=r, world_size=3)])
        for r in range(3)
    ]
    assert sorted(torch.cat(evals).flatten().tolist()) == list(range(10))


def test_spectra_sharing_initial_conditions_stay_in_one_split(tmp_path):
    toy_store(tmp_path, n=400, sims_per_ic=4)
    m = dm(tmp_path)
    seeds = Store(tmp_path).dataset().load().seeds
    for part in (m.train_idx, m.val_idx, m.test_idx):
        others = np.setdiff1d(np.arange(400), part)
        assert not set(seeds[part]) & set(seeds[others]), (
            "an IC realisation is split across train/val/test"
        )
    assert sum(map(len, (m.train_idx, m.val_idx, m.test_idx))) == 400
    assert 50 <= len(m.test_idx) <= 110  # ~20 % of the 100 groups, 4 spectra each


def test_evaluate_runs_in_eval_mode_and_restores_the_mode(tmp_path):
    """Dropout must be off when metrics are computed outside the Trainer (sweep objectives use
    them)."""
    from astrops.models import ParameterEstimator, RegressionTask

    toy_store(tmp_path)
    m = dm(tmp_path)
    backbone = DenseBackbone(m.input_shape, hidden=[64, 32], dropout=0.5)
    model = ParameterEstimator(
        backbone, RegressionTask(m.codec, backbone.out_features), m.transform, m.parameters
    )
    x = torch.as_tensor(np.nan_to_num(m.delta), dtype=torch.float32)
    y = torch.as_tensor(m.params, dtype=torch.float32)
    model.train()
    a, b = model.evaluate(x, y, "v"), model.evaluate(x, y, "v")
    assert a == b and model.training


def test_held_out_dataset_becomes_the_whole_test_set(tmp_path):
    toy_store(tmp_path / "train", n=200)
    toy_store(tmp_path / "held", n=80, seed=1, spec_seed=0, ic_offset=10_000, name="held")
    m = dm(tmp_path / "train", test_store_dir=str(tmp_path / "held"))
    assert len(m.test_idx) == 80 and (m.test_idx >= 200).all()
    # every training-set simulation trains or validates
    assert len(m.train_idx) + len(m.val_idx) == 200
    assert m.lineage()["test_dataset"].startswith("held-")
    inner = dm(tmp_path / "train")
    assert m.lineage()["test_hash"] != inner.lineage()["test_hash"]
    np.testing.assert_array_equal(
        m.params[m.test_idx], Store(tmp_path / "held").dataset().load().params
    )


def test_held_out_dataset_must_match_configuration_and_be_unseen(tmp_path):
    toy_store(tmp_path / "train", n=100)
    toy_store(tmp_path / "other", n=50, seed=1, spec_seed=1, ic_offset=10_000)
    with pytest.raises(DataConfigError, match="another configuration"):
        dm(tmp_path / "train", test_store_dir=str(tmp_path / "other"))
    toy_store(tmp_path / "same_ics", n=50, seed=1, spec_seed=0, ic_offset=0)
    with pytest.raises(DataConfigError, match="shares 50 initial-condition seeds"):
        dm(tmp_path / "train", test_store_dir=str(tmp_path / "same_ics"))
    with pytest.raises(DataConfigError, match="kfold"):
        dm(tmp_path / "train", test_store_dir=str(tmp_path / "other"), kfold=5)


def test_extra_training_dataset_only_trains(tmp_path):
    """More simulations of the same configuration join the training split only: validation and
    test (and so the emulator's error fit and every test metric) stay the dataset's own."""
    toy_store(tmp_path / "train", n=200)
    toy_store(tmp_path / "more", n=60, seed=2, spec_seed=0, ic_offset=20_000, name="more")
    plain = dm(tmp_path / "train")
    m = dm(tmp_path / "train", extra_train_store_dir=str(tmp_path / "more"))
    np.testing.assert_array_equal(m.val_idx, plain.val_idx)
    np.testing.assert_array_equal(m.test_idx, plain.test_idx)
    assert len(m.train_idx) == len(plain.train_idx) + 60 and m.n_extra == 60
    np.testing.assert_array_equal(
        m.params[m.train_idx[-60:]], Store(tmp_path / "more").dataset().load().params
    )
    assert m.lineage()["extra_train_dataset"].endswith("(60 spectra)")
    assert m.lineage()["test_hash"] == plain.lineage()["test_hash"]
    # with a held-out test dataset too: records are [own, held-out, extra]
    toy_store(tmp_path / "held", n=40, seed=3, spec_seed=0, ic_offset=40_000, name="held")
    both = dm(
        tmp_path / "train",
        test_store_dir=str(tmp_path / "held"),
        extra_train_store_dir=str(tmp_path / "more"),
    )
    assert both.test_idx.tolist() == list(range(200, 240))
    assert both.train_idx[-60:].tolist() == list(range(240, 300))
    toy_store(tmp_path / "same_ics", n=50, seed=1, spec_seed=0, ic_offset=0)
    with pytest.raises(DataConfigError, match="data.extra_train_store_dir: .*shares 50"):
        dm(tmp_path / "train", extra_train_store_dir=str(tmp_path / "same_ics"))
    toy_store(tmp_path / "other", n=50, seed=1, spec_seed=1, ic_offset=30_000)
    with pytest.raises(DataConfigError, match="another configuration"):
        dm(tmp_path / "train", extra_train_store_dir=str(tmp_path / "other"))


def test_bundled_holdout_is_unseen_and_complete():
    """The shipped held-out set: 1 000 simulations of the reference configuration, none shared with
    training."""
    m = SpectraDataModule(
        str(ROOT / "data/reference"),
        "reference",
        test_store_dir=str(ROOT / "data/holdout"),
        test_dataset="holdout",
    )
    m.prepare()
    n_ref = len(Store(ROOT / "data/reference").dataset("reference").load())
    assert len(m.test_idx) == 1000 and len(m.train_idx) + len(m.val_idx) == n_ref >= 2000
    train_params = {tuple(p) for p in m.params[:n_ref].round(8)}
    assert not any(tuple(p) in train_params for p in m.params[m.test_idx].round(8))
    assert 0.3 < m.informative_mask(m.test_idx).mean() < 0.7  # x̄_HI at z = 8 spans the prior


def test_malformed_design_priors_are_one_line_and_verify_names_them(tmp_path, capsys):
    ds = toy_store(
        tmp_path,
        n=60,
        priors={"HII_EFF_FACTOR": 5, "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]},
    )
    with pytest.raises(DataConfigError, match=r"malformed priors .*astrops.store verify") as exc:
        dm(tmp_path)
    assert "\n" not in str(exc.value)
    from astrops.entry.store import main as store_cli

    assert store_cli(["verify", str(tmp_path)]) == 1
    assert f"{ds.name}: a record's design declares malformed priors" in capsys.readouterr().out


def test_a_held_out_set_never_widens_the_training_priors(tmp_path):
    """Class edges, strata and the prediction box come from the training dataset's design alone."""
    toy_store(tmp_path / "train", n=200, spec_seed=1)
    wide = {**RANGES, "HII_EFF_FACTOR": [1.0, 400.0]}
    toy_store(tmp_path / "held", n=40, spec_seed=1, ic_offset=10_000, priors=wide)
    m = dm(tmp_path / "train", test_store_dir=str(tmp_path / "held"))
    assert (
        m.ranges[0].tolist() == RANGES["HII_EFF_FACTOR"]
        and m.edges[0][-1] == RANGES["HII_EFF_FACTOR"][1]
    )


def test_grouped_training_batches_are_the_ungrouped_ones_in_order():
    """A training call's group holds exactly the mini-batches (order, noise draws) one call per
    mini-batch would see; an integer limit counts mini-batches, not groups."""
    x, y = torch.randn(103, 2, 5), torch.randn(103, 3)
    noise = torch.full((2, 5), 0.3)
    one = DeviceBatches(x, y, 8, True, seed=4, noise=noise)
    grouped = DeviceBatches(x, y, 8, True, seed=4, noise=noise, group=5)
    for _ in range(2):  # two epochs: a new permutation and new noise each, identical on both
        singles = list(one)
        groups = list(grouped)
        assert len(groups) == len(grouped) == 3 and [len(g) for g in groups] == [5, 5, 3]
        flat = [b for g in groups for b in g]
        assert len(flat) == len(singles) == len(one) == 13
        for (xa, ya), (xb, yb) in zip(singles, flat, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    limited = DeviceBatches(x, y, 8, True, group=5, limit=7)
    assert len(limited) == 2 and sum(len(g) for g in limited) == 7
    # evaluation is never grouped
    assert all(isinstance(b, tuple) for b in DeviceBatches(x, y, 8, False, group=5))
