"""The observation layer in the data module: 21CMMC's noise model, k-range, fixed and fresh
realisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_cfg

from astrops.data import SpectraDataModule
from astrops.simulation.sensitivity import load_table

HERA = {
    "name": "hera350_1000h",
    "tables_dir": str(ROOT / "data/noise/hera350_1000h"),
    "min_k": 0.1,
    "max_k": 1.0,
}


def _dm(observation=None, **kw) -> SpectraDataModule:
    dm = SpectraDataModule(
        str(ROOT / "data/reference"),
        "reference",
        redshifts=[8.0, 9.0],
        observation=observation,
        **kw,
    )
    dm.prepare()
    return dm


@pytest.fixture(scope="module")
def pair():
    return _dm(), _dm(HERA)


def test_none_is_todays_data_bit_for_bit(pair):
    clean, _ = pair
    cfg = compose_cfg("train", ["data.redshifts=[8.0,9.0]"])
    assert cfg.observation.name == "none" and cfg.data.observation.name == "none"  # the default
    same = _dm({"name": "none"})
    np.testing.assert_array_equal(same.delta, clean.delta)
    assert (
        same.kept_bins.tolist() == clean.kept_bins.tolist()
        and same.lineage()["observation"] == "none"
    )


def test_noise_is_the_table_interpolated_inside_its_range_and_the_k_cut(pair):
    clean, noisy = pair
    k = noisy.k
    kept = k[noisy.kept_bins]
    assert kept.min() >= 0.1 and kept.max() <= 1.0 and len(noisy.kept_bins) == 13
    assert set(noisy.kept_bins) < set(clean.kept_bins)
    for i, z in enumerate((8.0, 9.0)):
        k_tab, errs = load_table(ROOT / f"data/noise/hera350_1000h/z{z:g}.npz")
        np.testing.assert_allclose(
            noisy.sigma[i, noisy.kept_bins], np.interp(kept, k_tab, errs), rtol=1e-12
        )
        outside = (k < k_tab.min()) | (k > k_tab.max()) | (k < 0.1) | (k > 1.0)
        assert np.isnan(noisy.sigma[i, outside]).all()  # not measured: no extrapolation


def test_validation_and_test_see_one_fixed_realisation(pair):
    clean, noisy = pair
    again = _dm(HERA)
    held = np.concatenate([noisy.val_idx, noisy.test_idx])
    # reproducible from split_seed
    np.testing.assert_array_equal(again.delta[held], noisy.delta[held])
    b = noisy.kept_bins
    pulls = (noisy.delta[held][:, :, b] - clean.delta[held][:, :, b]) / noisy.sigma[:, b]
    # Gaussian noise of the table's 1σ
    assert abs(pulls.mean()) < 0.05 and abs(pulls.std() - 1) < 0.05
    np.testing.assert_array_equal(
        noisy.delta[noisy.train_idx][:, :, b], clean.delta[clean.train_idx][:, :, b]
    )


def test_recalibration_sees_the_validation_split_and_fresh_observations_of_it(pair):
    """~2 000 pairs: the validation spectra as they are, then new seeded noise draws of each; the
    noiseless data module recalibrates on its validation split unchanged."""
    clean, noisy = pair
    clean.setup(), noisy.setup()
    x, y = noisy.calibration_tensors()
    x_val, y_val = noisy.tensors["val"]
    n, draws = len(y_val), -(-2000 // len(y_val))
    assert len(y) == n * draws >= 2000 and torch.equal(x[:n], x_val)
    assert torch.equal(y, y_val.repeat(draws, 1))
    again = _dm(HERA)
    again.setup()
    assert torch.equal(again.calibration_tensors()[0], x)  # seeded by split_seed
    b = noisy.kept_bins
    sigma = torch.as_tensor(noisy.sigma[:, b], dtype=torch.float32)
    clean_val = torch.as_tensor(noisy.val_clean[:, :, b], dtype=torch.float32)
    pulls = (x[n:, :, b].reshape(draws - 1, n, *clean_val.shape[1:]) - clean_val) / sigma
    assert abs(float(pulls.mean())) < 0.02 and abs(float(pulls.std()) - 1) < 0.02
    assert not torch.equal(x[n : 2 * n], x_val)  # new draws, not copies
    cx, cy = clean.calibration_tensors()
    assert torch.equal(cx, clean.tensors["val"][0]) and torch.equal(cy, clean.tensors["val"][1])


def test_training_sees_a_fresh_seeded_realisation_every_epoch(pair):
    _, noisy = pair
    noisy.setup()
    loader = noisy.train_dataloader()
    x_clean = noisy.tensors["train"][0]
    epochs = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    second = noisy.train_dataloader()
    again = [torch.cat([x for x, _ in second]) for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1]) and all(
        torch.equal(a, b) for a, b in zip(epochs, again, strict=True)
    )
    b = noisy.kept_bins
    sigma = torch.as_tensor(noisy.sigma[:, b], dtype=torch.float32)
    x0 = torch.cat([x for x, _ in noisy._batches("val", False)])
    assert torch.equal(x0, noisy.tensors["val"][0])  # evaluation batches add nothing
    order_free = epochs[0][:, :, b].sort(0).values - x_clean[:, :, b].sort(0).values
    assert order_free.abs().max() > 0 and torch.isfinite(sigma).all()


def test_an_observation_model_takes_noisy_spectra_and_checks_their_errs(
    tmp_path, dense_checkpoint
):
    """Trained with observation=hera350_1000h: negative Δ² is a valid measurement, NaN outside the
    kept bins is fine, and an 'errs' more than 10 % from the model's noise is refused in one line
    (another instrument)."""
    import mlflow
    from conftest import compose_cfg, train_reported

    from astrops.errors import InputError
    from astrops.inference import load_model

    cfg = compose_cfg(
        "train",
        [
            "observation=hera350_1000h",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "log_model=false",
            "saliency=false",
            "callbacks.progress_bar=null",
            f"paths.output_dir={tmp_path}/run",
            f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
            f"logger.mlflow.artifact_root={tmp_path}/a",
        ],
    )
    model = load_model(train_reported(cfg)[1])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    assert (
        run.data.params["observation"] == "hera350_1000h"
        and run.data.tags["observation"] == "hera350_1000h"
    )
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    # example Δ²(k) with the instrument's ±σ bands
    assert "figures/observed_spectra.png" in figures
    assert model.meta["observation"][
        "observation"
    ] == "hera350_1000h" and model.noise_sigma.shape == (1, 13)
    k = np.asarray(model.meta["k"])
    sigma = np.full((1, len(k)), np.nan)
    sigma[:, model.kept_bins] = model.noise_sigma
    delta = np.full((2, len(k)), np.nan)
    # a noise-subtracted measurement below zero
    delta[:, model.kept_bins] = -0.5 * model.noise_sigma
    out = model.predict(k, delta, errs=sigma * 1.05)
    assert len(out) == 2 and np.isfinite(out["ION_Tvir_MIN"]).all()
    with pytest.raises(InputError, match=r"more than 10 %.*another instrument") as exc:
        model.predict(k, delta, errs=sigma * 1.5)
    assert "\n" not in str(exc.value)
    noiseless = load_model(dense_checkpoint)
    with pytest.raises(InputError, match="negative values"):
        noiseless.predict(k, np.where(np.isnan(delta), 1.0, delta))
    with pytest.raises(InputError, match="trained on noiseless spectra"):
        noiseless.predict(k, np.ones((2, len(k))), errs=np.ones((1, len(k))))


def test_metadata_is_json_safe_and_read_once():
    import json

    from astrops.data.observation import Observation

    obs = Observation.from_config({**HERA, "min_k": None})
    meta = obs.metadata()
    assert meta["min_k"] is None and meta["max_k"] == 1.0 and len(meta["tables_hash"]) == 64
    json.dumps(meta, allow_nan=False)  # the predictions sidecar refuses NaN/inf
    assert obs.metadata() is meta


# -- an observation's own k-bins
# ------------------------------------------------------------------------
def test_regrid_is_linear_in_log_k_and_never_extrapolates():
    from astrops.data.observation import regrid_log_k

    k = np.geomspace(0.05, 2.0, 22)
    delta = np.stack([3.0 + 2.0 * np.log(k), 1.0 - np.log(k)])  # exactly linear in log k
    delta[:, :2] = np.nan  # the stored spectra's empty first bins
    k_new = np.array([0.03, k[1], k[2], 0.1234, 0.5, 1.9, 2.0, 2.5])
    out = regrid_log_k(k, delta, k_new)
    inside = (k_new >= k[2]) & (k_new <= k[-1])
    np.testing.assert_allclose(
        out[:, inside],
        np.stack([3.0 + 2.0 * np.log(k_new[inside]), 1.0 - np.log(k_new[inside])]),
        rtol=1e-12,
    )
    # outside the finite stored range: not measured
    assert np.isnan(out[:, ~inside]).all() and inside.sum() == 5
    # its own grid: unchanged
    np.testing.assert_array_equal(regrid_log_k(k, delta, k[2:]), delta[:, 2:])


def test_an_observation_on_its_own_k_bins_in_h_per_mpc(pair):
    from astrops.data.observation import Observation, regrid_log_k
    from astrops.errors import ObservationError

    clean, _ = pair
    bins = [0.15, 0.25, 0.4, 0.6, 0.9, 1.2]  # h/Mpc
    own = _dm({**HERA, "k_bins": bins, "k_units": "h/Mpc"})
    h = own.dataset.spec["cosmo_params"]["hlittle"]
    np.testing.assert_allclose(own.k, np.asarray(bins) * h, rtol=1e-12)
    assert (
        own.k[own.kept_bins].min() >= 0.1
        and own.k[own.kept_bins].max() <= 1.0
        and len(own.kept_bins) == 6
    )
    np.testing.assert_array_equal(
        own.delta[own.train_idx][:, :, own.kept_bins],
        regrid_log_k(clean.k, clean.delta[clean.train_idx], own.k)[:, :, own.kept_bins],
    )
    k_tab, errs = load_table(ROOT / "data/noise/hera350_1000h/z8.npz")
    np.testing.assert_allclose(
        own.sigma[0, own.kept_bins], np.interp(own.k[own.kept_bins], k_tab, errs), rtol=1e-12
    )
    assert (
        own.observation.metadata()["k_bins"] == bins
        and own.observation.metadata()["k_units"] == "h/Mpc"
    )
    with pytest.raises(ObservationError, match="hlittle.*observation.k_units=1/Mpc"):
        Observation.from_config({**HERA, "k_bins": bins, "k_units": "h/Mpc"}).on_own_grid(
            clean.k, clean.delta, {}
        )
    # 0.08 h/Mpc = 0.054 /Mpc is below the simulated range: a band that cannot be modelled is
    # refused, not dropped
    with pytest.raises(
        ObservationError, match=r"\[0.08\] h/Mpc lie outside the simulated k-range"
    ) as exc:
        _dm({**HERA, "k_bins": [0.08, *bins], "k_units": "h/Mpc"})
    assert "\n" not in str(exc.value)


def test_regridding_error_on_real_boxes_is_what_the_docs_say():
    """scripts/kgrid_error.py on two small real 21cmFAST boxes: the stored grid mapped onto
    21CMMC's other binnings of the same box stays within the documented order of magnitude
    (docs/observations.md)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from kgrid_error import measure

    result = measure(n=2, redshift=8.0, hii_dim=20, box_len=50.0)
    rows = result["binnings"]
    assert set(rows) == {"log15", "log30", "linear22"}
    for row in rows.values():
        assert (
            row["bins_compared"] >= 5
            and 0 < row["median_rel"] < 0.3
            and row["p90_rel"] >= row["median_rel"]
        )


def test_predict_refuses_another_grid_naming_the_models_own_bins(tmp_path, capfd):
    from conftest import compose_cfg, run_in_process

    from astrops.inference import load_model
    from astrops.training import train

    bins = "[0.15,0.25,0.4,0.6]"
    cfg = compose_cfg(
        "train",
        [
            "observation=hera350_1000h",
            f"observation.k_bins={bins}",
            "observation.k_units=h/Mpc",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "logger=none",
            "saliency=false",
            "callbacks.progress_bar=null",
            f"paths.output_dir={tmp_path}/run",
        ],
    )
    _, ckpt = train(cfg)

    model = load_model(ckpt)
    assert len(model.k) == 4 and model.meta["observation"]["k_units"] == "h/Mpc"
    stored = _dm().k  # the simulations' 22-bin grid: not what this model measures
    np.savez(tmp_path / "wrong.npz", k=stored, delta=np.ones((2, len(stored))))
    np.savez(tmp_path / "right.npz", k=model.k, delta=np.full((2, 4), 5.0))
    bad = run_in_process(
        "predict.py",
        f"ckpt_path={ckpt}",
        f"input={tmp_path}/wrong.npz",
        f"output={tmp_path}/w.csv",
        capfd=capfd,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert (
        "own k-bins" in bad.stderr
        and "0.15, 0.25, 0.4, 0.6 h/Mpc" in bad.stderr
        and not (tmp_path / "w.csv").exists()
    )
    good = run_in_process(
        "predict.py",
        f"ckpt_path={ckpt}",
        f"input={tmp_path}/right.npz",
        f"output={tmp_path}/r.csv",
        capfd=capfd,
    )
    assert good.returncode == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 3


def test_asinh_features_of_an_observation_use_its_noise_as_the_scale():
    noisy = _dm(HERA, feature_transform="asinh")
    np.testing.assert_allclose(
        noisy.transform.floor.numpy(), noisy.sigma[:, noisy.kept_bins], rtol=1e-6
    )


def test_a_model_from_another_checkout_finds_its_noise_tables_by_content_hash(tmp_path):
    """A checkpoint records the absolute tables_dir of the checkout that trained it (a cluster, a
    removed worktree): scoring elsewhere uses this project's tables only when their hash is the
    recorded one."""
    from astrops.evaluation import relocated_observation
    from astrops.simulation.sensitivity import tables_hash

    here = ROOT / "data/noise/hera350_1000h"
    obs = {
        "name": "hera350_1000h",
        "tables_dir": str(tmp_path / "gone/noise/hera350_1000h"),
        "min_k": 0.1,
    }
    moved = relocated_observation(obs, {"tables_hash": tables_hash(here)})
    assert moved["tables_dir"] == str(here) and moved["min_k"] == 0.1
    with pytest.raises(FileNotFoundError, match="differ from the ones it was trained with"):
        relocated_observation(obs, {"tables_hash": "0" * 64})
    with pytest.raises(FileNotFoundError, match="are missing"):
        relocated_observation(
            {**obs, "tables_dir": str(tmp_path / "gone/noise/ska_nowhere")}, {"tables_hash": "x"}
        )
    assert relocated_observation({**obs, "tables_dir": str(here)}, None)["tables_dir"] == str(here)
