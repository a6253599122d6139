"""The observation layer in the data module: 21CMMC's noise model, k-range, fixed and fresh realisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_cfg

from astrops.data import SpectraDataModule
from astrops.simulation.sensitivity import load_table

HERA = {"name": "hera350_1000h", "tables_dir": str(ROOT / "data/noise/hera350_1000h"), "min_k": 0.1, "max_k": 1.0}


def _dm(observation=None, **kw) -> SpectraDataModule:
    dm = SpectraDataModule(str(ROOT / "data/reference"), "reference", redshifts=[8.0, 9.0], observation=observation, **kw)
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
    assert same.kept_bins.tolist() == clean.kept_bins.tolist() and same.lineage()["observation"] == "none"


def test_noise_is_the_table_interpolated_inside_its_range_and_the_k_cut(pair):
    clean, noisy = pair
    k = noisy.k
    kept = k[noisy.kept_bins]
    assert kept.min() >= 0.1 and kept.max() <= 1.0 and len(noisy.kept_bins) == 13
    assert set(noisy.kept_bins) < set(clean.kept_bins)
    for i, z in enumerate((8.0, 9.0)):
        k_tab, errs = load_table(ROOT / f"data/noise/hera350_1000h/z{z:g}.npz")
        np.testing.assert_allclose(noisy.sigma[i, noisy.kept_bins], np.interp(kept, k_tab, errs), rtol=1e-12)
        outside = (k < k_tab.min()) | (k > k_tab.max()) | (k < 0.1) | (k > 1.0)
        assert np.isnan(noisy.sigma[i, outside]).all()  # not measured: no extrapolation


def test_validation_and_test_see_one_fixed_realisation(pair):
    clean, noisy = pair
    again = _dm(HERA)
    held = np.concatenate([noisy.val_idx, noisy.test_idx])
    np.testing.assert_array_equal(again.delta[held], noisy.delta[held])  # reproducible from split_seed
    b = noisy.kept_bins
    pulls = (noisy.delta[held][:, :, b] - clean.delta[held][:, :, b]) / noisy.sigma[:, b]
    assert abs(pulls.mean()) < 0.05 and abs(pulls.std() - 1) < 0.05  # Gaussian noise of the table's 1σ
    np.testing.assert_array_equal(noisy.delta[noisy.train_idx][:, :, b], clean.delta[clean.train_idx][:, :, b])


def test_training_sees_a_fresh_seeded_realisation_every_epoch(pair):
    _, noisy = pair
    noisy.setup()
    loader = noisy.train_dataloader()
    x_clean = noisy.tensors["train"][0]
    epochs = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    second = noisy.train_dataloader()
    again = [torch.cat([x for x, _ in second]) for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1]) and all(torch.equal(a, b) for a, b in zip(epochs, again, strict=True))
    b = noisy.kept_bins
    sigma = torch.as_tensor(noisy.sigma[:, b], dtype=torch.float32)
    x0 = torch.cat([x for x, _ in noisy._batches("val", False)])
    assert torch.equal(x0, noisy.tensors["val"][0])  # evaluation batches add nothing
    order_free = epochs[0][:, :, b].sort(0).values - x_clean[:, :, b].sort(0).values
    assert order_free.abs().max() > 0 and torch.isfinite(sigma).all()


def test_an_observation_model_takes_noisy_spectra_and_checks_their_errs(tmp_path, dense_checkpoint):
    """Trained with observation=hera350_1000h: negative Δ² is a valid measurement, NaN outside the kept bins is
    fine, and an 'errs' more than 10 % from the model's noise is refused in one line (another instrument)."""
    import mlflow
    from conftest import run_entry

    from astrops.inference import InputError, load_model

    proc = run_entry("train.py", "observation=hera350_1000h", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                     "log_model=false", "saliency=false", "callbacks.progress_bar=null", f"hydra.run.dir={tmp_path}/run",
                     f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db", f"logger.mlflow.artifact_root={tmp_path}/a")
    model = load_model(proc.stdout.strip().splitlines()[-1])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    assert run.data.params["observation"] == "hera350_1000h" and run.data.tags["observation"] == "hera350_1000h"
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/observed_spectra.png" in figures  # example Δ²(k) with the instrument's ±σ bands
    assert model.meta["observation"]["observation"] == "hera350_1000h" and model.noise_sigma.shape == (1, 13)
    k = np.asarray(model.meta["k"])
    sigma = np.full((1, len(k)), np.nan)
    sigma[:, model.kept_bins] = model.noise_sigma
    delta = np.full((2, len(k)), np.nan)
    delta[:, model.kept_bins] = -0.5 * model.noise_sigma  # a noise-subtracted measurement below zero
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
