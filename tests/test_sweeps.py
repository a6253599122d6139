"""Sweeps end to end into a real sqlite MLflow store: grid, Optuna, parallel joblib, a failing job,
compare."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import yaml
from conftest import run_entry

from astrops.analysis.compare import compare

# the sweep machinery is under test, not each job's report: no saliency or MLflow Model per job
QUICK = [
    "debug=limit",
    "callbacks.progress_bar=null",
    "saliency=false",
    "log_model=false",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
]


def sweep(tmp_path, *overrides, check=True):
    return run_entry(
        "train.py",
        "-m",
        *QUICK,
        f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"logger.mlflow.artifact_root={tmp_path}/artifacts",
        f"paths.log_dir={tmp_path}/logs",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *overrides,
        check=check,
        timeout=900,
    )


def runs(tmp_path, experiment: str = "astrops"):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_grid_sweep_failing_job_and_compare(tmp_path):
    # the four seed variants plus one job that crashes inside Lightning (negative learning rate)
    sweep(tmp_path, "model=dense,cnn", "task=regression,classification")
    sweep(tmp_path, "model.optimizer.lr=0.001,-1.0", "seed=1")
    client, rs = runs(tmp_path)
    finished = [r for r in rs if r.info.status == "FINISHED"]
    failed = [r for r in rs if r.info.status == "FAILED"]
    assert len(finished) == 5 and len(failed) == 1
    assert "Invalid learning rate" in failed[0].data.tags["error"]
    combos = {(r.data.tags["model"], r.data.tags["task"]) for r in finished}
    assert combos == {
        ("dense", "regression"),
        ("dense", "classification"),
        ("cnn", "regression"),
        ("cnn", "classification"),
    }
    for r in finished:
        assert r.data.tags["sweep_id"] and "job_num" in r.data.tags and "overrides" in r.data.tags
        assert "test/R2/ION_Tvir_MIN" in r.data.metrics
    assert len({r.data.tags["sweep_id"] for r in rs}) == 2
    md = compare("astrops", f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "cmp"))
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    names = table["configuration"].tolist()
    for combo in (
        "dense regression",
        "dense classification",
        "cnn regression",
        "cnn classification",
    ):
        assert any(n.startswith(combo + " debug=limit") for n in names), names
    assert not any("logger." in n or "paths." in n for n in names)
    assert "seed study: dense regression (published)" in names
    ref = table.set_index("configuration").loc["seed study: cnn regression (published)"]
    assert str(ref["R2/HII_EFF_FACTOR"]) == "0.776"
    assert (tmp_path / "cmp" / "r2_by_configuration.png").stat().st_size > 10_000
    assert md.read_text().startswith("| configuration")
    _, rs = runs(tmp_path)
    assert not any(r.data.tags.get("kind") == "comparison" for r in rs)  # analysis runs stay apart
    _, analysis = runs(tmp_path, "astrops-analysis")
    assert [r.data.tags.get("kind") for r in analysis] == ["comparison"]


def test_seed_and_train_size_sweep_gives_mean_std_and_learning_curve(tmp_path):
    sweep(tmp_path, "seed=1,2", "data.train_size=60,120")
    compare("astrops", f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "cmp"), log=False)
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("configuration")
    rows = [k for k in table.index if k.startswith("dense regression")]
    assert len(rows) == 2 and all("data.train_size=" in k for k in rows)
    for k in rows:
        assert float(table.loc[k, "runs"]) == 2 and "±" in table.loc[k, "R2/ION_Tvir_MIN"]
    assert (tmp_path / "cmp" / "learning_curve.png").stat().st_size > 10_000
    runs = pd.read_csv(tmp_path / "cmp" / "runs.csv")
    assert sorted(runs["train_size"].unique().tolist()) == [60, 120]


def test_data_plots(tmp_path):
    from astrops.entry.analysis import plots_main

    assert plots_main(["spectra", "reference", "--redshift", "8", "--out", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name.split("_z8_")[1] for p in pngs] == ["distributions.png", "spectra.png"]
    assert all(p.stat().st_size > 20_000 for p in pngs)
    assert plots_main(["spectra", "reference", "--redshift", "6", "--out", str(tmp_path)]) == 2


def test_parallel_joblib_sweep_loses_nothing(tmp_path):
    sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2,3,4")
    client, rs = runs(tmp_path)
    assert len(rs) == 4 and all(r.info.status == "FINISHED" for r in rs)
    reference = set(rs[0].data.metrics)
    # per epoch: train/val loss, val R² overall, epoch, lr; once: test and informative R² (params +
    # overall), test RMSE/MAE (params), best/val/loss, time/*_s (astrops.tracking.summary; the rest
    # is in metrics.json)
    assert len(reference) == 5 + 2 * 4 + 2 * 3 + 1 + 4, sorted(reference)
    for r in rs:
        assert set(r.data.metrics) == reference  # every metric of every run arrived
        hist = client.get_metric_history(r.info.run_id, "val/loss")
        assert len(hist) == 2  # one value per epoch, none lost


def test_optuna_sweep_writes_and_logs_best_parameters(tmp_path):
    sweep(
        tmp_path,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) >= {
        "model.optimizer.lr",
        "data.batch_size",
        "data.feature_transform",
    }
    assert best["best_value"] > 0
    client, trials = runs(tmp_path)
    # the sweep's summary stays apart from its trials
    _, (summary,) = runs(tmp_path, "astrops-analysis")
    assert summary.data.tags["kind"] == "optuna_summary"
    assert len(trials) == 3
    assert summary.data.metrics["best_value"] == pytest.approx(best["best_value"])
    losses = [r.data.metrics.get("val/loss") for r in trials]
    assert all(v is not None for v in losses)


def test_compare_keeps_ensembles_apart_from_their_members():
    from astrops.analysis.compare import config_key

    common = {
        "model": "dense",
        "task": "regression",
        "overrides": "experiment=best_regression seed=1",
    }
    ensemble_key = config_key({**common, "ensemble_members": "5"})
    member_key = config_key({**common, "ensemble_member": "0"})
    single_key = config_key(common)
    assert len({ensemble_key, member_key, single_key}) == 3
    assert "ensemble of 5" in ensemble_key and "member" in member_key
