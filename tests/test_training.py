"""Training end to end on the bundled reference data, into a real sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import run_entry
from conftest import train_reported as train

from astrops.data import SpectraDataModule
from astrops.errors import DataConfigError, InputError
from astrops.inference import load_model
from astrops.metrics import CLASSIFICATION_METRICS, DISTRIBUTION_METRICS, REGRESSION_METRICS
from astrops.tracking.summary import is_per_epoch, is_summary

QUICK = ["trainer.max_epochs=3", "trainer.limit_train_batches=5"]
PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def mlflow_run(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "astrops"]
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


@pytest.mark.parametrize("model", ["dense", "cnn"])
@pytest.mark.parametrize("task", ["regression", "classification", "gaussian"])
def test_each_combination_trains_and_logs(tmp_path, train_cfg, model, task):
    results, best = train(train_cfg(f"model={model}", f"task={task}", *QUICK))
    client, run = mlflow_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == model and run.data.tags["task"] == task
    assert (
        run.data.tags["dataset_name"].startswith("reference-")
        and run.data.tags["split_seed"] == "0"
    )
    # every result is in metrics.json; MLflow's metric keys are the summary (≤ 40: the compare page
    # stays legible)
    everything = json.loads(
        Path(client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))).read_text()
    )
    names = REGRESSION_METRICS + (CLASSIFICATION_METRICS if task == "classification" else ())
    for stage in ("best/val", "test"):
        for metric in names:
            for p in [*PARAMS, "overall"]:
                assert (
                    f"{stage}/{metric}/{p}" in results and f"{stage}/{metric}/{p}" in everything
                ), f"{stage}/{metric}/{p}"
    logged = set(run.data.metrics)
    assert len(logged) <= 40, sorted(logged)
    assert {
        "train/loss",
        "val/loss",
        "val/R2/overall",
        "best/val/loss",
        "test/R2/overall",
    } <= logged, sorted(logged)
    assert {f"test/{m}/{p}" for m in ("R2", "RMSE", "MAE") for p in PARAMS} <= logged
    assert {k for k in everything if is_summary(k)} == {k for k in logged if not is_per_epoch(k)}
    history = client.get_metric_history(run.info.run_id, "test/R2/ION_Tvir_MIN")
    assert len(history) == 1 and history[0].step >= max(
        h.step for h in client.get_metric_history(run.info.run_id, "val/loss")
    )
    assert (
        run.data.params["model"] == model
        and run.data.params["task"] == task
        and run.data.params["lr"] == "0.001"
    )
    assert not any("_target_" in k or "ckpt" in v for k, v in run.data.params.items()), (
        run.data.params
    )
    arts = {
        a.path
        for d in ("", "figures", "checkpoints")
        for a in client.list_artifacts(run.info.run_id, d)
    }
    assert {
        "config.yaml",
        "metrics_table.md",
        "model_card.json",
        "figures/pred_vs_true.png",
        "figures/training_curves.png",
        "figures/saliency.png",
        "saliency.json",
    } <= arts
    if task == "classification":  # per-parameter F1 in MLflow, not only in metrics.json
        assert {f"test/F1/{p}" for p in [*PARAMS, "overall"]} <= logged
        assert "figures/confusion_matrices.png" in arts
        assert 0 <= results["test/acc_pm1/ION_Tvir_MIN"] <= 1
    if task == "gaussian":
        for stage in ("best/val", "test", "test_informative"):
            for metric in DISTRIBUTION_METRICS:
                assert f"{stage}/{metric}/R_BUBBLE_MAX" in everything, f"{stage}/{metric}"
        assert {
            "test/coverage68/R_BUBBLE_MAX",
            "test/NLL/overall",
            "test/CRPS/overall",
            "test/sbc_p/R_BUBBLE_MAX",
            "test/tarp_atc",
        } <= logged
        assert {
            "figures/sbc.png",
            "figures/tarp.png",
            "figures/corner_5.png",
            "figures/coverage_curve.png",
            "coverage.md",
            "coverage_curve.json",
            "calibration.json",
        } <= arts
    # calibrated after training: the factors are logged and in the checkpoint
    if task != "regression":
        name = "var_scale" if task == "gaussian" else "temperature"
        assert run.data.metrics[f"calibration/{name}/ION_Tvir_MIN"] > 0
        assert best.endswith("-calibrated.ckpt")
        state = torch.load(best, weights_only=True)["state_dict"]
        assert float(state[f"task.{name}"][1]) == pytest.approx(
            run.data.metrics[f"calibration/{name}/ION_Tvir_MIN"]
        )
    assert any(a.startswith("checkpoints/") and a.endswith(".ckpt") for a in arts)
    assert run.data.tags["best_checkpoint"] == best


def test_real_training_predicts_and_round_trips(tmp_path, train_cfg):
    """A short real dense regression: Tvir is well constrained; the checkpoint reproduces the
    model."""
    cfg = train_cfg("trainer.max_epochs=20", "callbacks.early_stopping.patience=10")
    results, best = train(cfg)
    assert results["test/R2/ION_Tvir_MIN"] > 0.8, results
    dm = SpectraDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    dm.prepare()
    test = dm.test_idx
    predictor = load_model(best)
    df = predictor.predict(dm.k, dm.delta[test][:, 0, :])
    assert list(df.columns[:3]) == PARAMS and len(df) == len(test)
    # against the stored true parameters: the same R² the run logged
    true = dm.params[test]
    r2 = 1 - ((df[PARAMS].to_numpy() - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2[1], results["test/R2/ION_Tvir_MIN"], atol=1e-4)
    # and the in-memory model of the same checkpoint gives the same numbers as predict.py
    np.savez(tmp_path / "in.npz", k=dm.k, delta=dm.delta[test][:, 0, :])
    out = tmp_path / "pred.csv"
    run_entry(
        "predict.py",
        f"ckpt_path={best}",
        f"input={tmp_path / 'in.npz'}",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/h",
    )
    import pandas as pd

    csv = pd.read_csv(out)
    np.testing.assert_allclose(csv[PARAMS].to_numpy(), df[PARAMS].to_numpy(), rtol=1e-6)
    # lineage beside the CSV, not in it
    assert "dataset_hash" in out.with_suffix(".json").read_text()


def test_same_seed_same_metrics(tmp_path, train_cfg):
    a, _ = train(train_cfg(*QUICK, "logger.mlflow=null"))
    b, _ = train(train_cfg(*QUICK, "logger.mlflow=null"))
    c, _ = train(train_cfg(*QUICK, "logger.mlflow=null", "seed=7"))
    assert a["test/R2/ION_Tvir_MIN"] == b["test/R2/ION_Tvir_MIN"]
    assert a["test/R2/ION_Tvir_MIN"] != c["test/R2/ION_Tvir_MIN"]


def test_resume_from_last_checkpoint(tmp_path, train_cfg):
    first, _ = train(
        train_cfg(
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=3",
            "callbacks.early_stopping=null",
        )
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 1
    run_id = ckpt["astrops"]["mlflow_run_id"]
    train(
        train_cfg(
            "trainer.max_epochs=4",
            "trainer.limit_train_batches=3",
            "callbacks.early_stopping=null",
            f"ckpt_path={last}",
        )
    )
    assert torch.load(last, weights_only=True)["epoch"] == 3
    client, run = mlflow_run(tmp_path)  # still exactly one run: the same one, continued
    assert run.info.run_id == run_id
    losses = client.get_metric_history(run_id, "train/loss")
    assert len(losses) == 4  # epochs 0-1 before the resume and 2-3 after, in one run


def test_checkpoint_loads_with_weights_only(tmp_path, train_cfg):
    _, best = train(train_cfg(*QUICK, "logger.mlflow=null", "task=classification"))
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["astrops"]["n_classes"] == 25
    edges = ckpt["state_dict"]["task.codec.edges"]
    # the seed's class 0: [5, 12.8)
    np.testing.assert_allclose(edges[0, :2].numpy(), [5.0, 12.8], rtol=1e-6)
    df = load_model(best).predict(np.asarray(ckpt["astrops"]["k"]), np.ones((2, 22)))
    assert {"HII_EFF_FACTOR_class", "HII_EFF_FACTOR_prob"} <= set(df.columns)


def test_bad_inputs(tmp_path, train_cfg):
    proc = run_entry("train.py", "model=transformer", check=False)
    assert proc.returncode != 0 and "model/transformer" in proc.stderr and "dense" in proc.stderr
    proc = run_entry("train.py", "task=ranking", check=False)
    assert proc.returncode != 0 and "task/ranking" in proc.stderr
    np.savez(tmp_path / "x.npz", k=np.arange(3.0), delta=np.ones(3))
    proc = run_entry(
        "predict.py", f"ckpt_path={tmp_path}/nope.ckpt", f"input={tmp_path}/x.npz", check=False
    )
    assert proc.returncode == 2 and "checkpoint" in proc.stderr and "does not exist" in proc.stderr
    (tmp_path / "empty").mkdir()
    from astrops.store import Store

    Store(tmp_path / "empty").create_dataset(
        "empty", {"e": 1}, PARAMS, [8.0], np.geomspace(0.1, 1, 5)
    )
    with pytest.raises(DataConfigError, match="has no spectra"):
        SpectraDataModule(str(tmp_path / "empty")).prepare()
    with pytest.raises(DataConfigError, match=r"data.redshifts \[6.0\]"):
        SpectraDataModule(train_cfg().data.store_dir, redshifts=[6.0]).prepare()


def test_predict_refuses_wrong_k_grid(tmp_path, train_cfg):
    _, best = train(train_cfg(*QUICK, "logger.mlflow=null"))
    p = load_model(best)
    with pytest.raises(InputError, match="k grid"):
        p.predict(p.k * 1.01, np.ones((1, 22)))
    with pytest.raises(InputError, match="NaN"):
        p.predict(p.k, np.full((1, 22), np.nan))


def test_a_single_informative_test_spectrum_does_not_break_the_run(tmp_path, train_cfg):
    """R² needs two samples: with one partly ionized test box the informative-subset metrics are
    skipped."""
    from test_data import toy_store

    toy_store(tmp_path / "probe", n=120, redshifts=(8.0,))
    probe = SpectraDataModule(str(tmp_path / "probe"), redshifts=[8.0])
    probe.prepare()
    xH = np.zeros((120, 1))
    # the split depends on the parameters only: this one lands in the test set
    xH[probe.test_idx[0]] = 0.5
    toy_store(tmp_path / "store", n=120, redshifts=(8.0,), xH=xH)
    results, best = train(
        train_cfg(
            f"data.store_dir={tmp_path / 'store'}",
            "data.dataset=null",
            "trainer.max_epochs=2",
            "saliency=false",
        )
    )
    assert best and np.isfinite(results["test/R2/ION_Tvir_MIN"])
    assert not any(k.startswith("test_informative/") for k in results)
    client, run = mlflow_run(tmp_path)
    assert run.info.status == "FINISHED"
