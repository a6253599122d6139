"""scikit-learn baselines end to end on the bundled reference data, into a real sqlite MLflow
store."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
import torch
from conftest import compose_cfg, run_entry

from astrops.data import SpectraDataModule, informative_mask
from astrops.entry import run_baselines
from astrops.metrics import ParameterMetrics
from astrops.tracking.summary import is_summary

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def _paths(tmp) -> list[str]:
    return [
        f"logger.mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"logger.mlflow.artifact_root={tmp}/artifacts",
        f"paths.log_dir={tmp}/logs",
    ]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One real multirun of the two fast baselines; its MLflow client and runs by model name."""
    tmp = tmp_path_factory.mktemp("baselines")
    proc = run_entry("baselines.py", "-m", "baseline=ridge,knn", *_paths(tmp), cwd=str(tmp))
    client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("astrops")
    runs = {r.data.tags["model"]: r for r in client.search_runs([exp.experiment_id])}
    return tmp, proc, client, runs


def _neural_keys(stage: str) -> set[str]:
    """The keys of a neural regression run: ParameterMetrics' regression keys, plus the loss on
    ``test`` (the informative subset is logged without a loss)."""
    metrics = ParameterMetrics(PARAMS)
    metrics.update(torch.rand(4, 3), torch.rand(4, 3))
    return {
        *metrics.compute(stage, torch.ones(3)),
        *([f"{stage}/loss"] if stage == "test" else []),
    }


def test_multirun_logs_like_a_neural_run(sweep):
    tmp, proc, client, runs = sweep
    assert set(runs) == {"ridge", "knn"}
    dm = SpectraDataModule(
        **{k: v for k, v in compose_cfg("baselines", []).data.items() if k != "_target_"}
    )
    dm.prepare()
    assert (informative_mask(dm.xH[dm.test_idx]) == dm.informative_mask(dm.test_idx)).all()
    for name, run in runs.items():
        tags, metrics = run.data.tags, run.data.metrics
        assert run.info.status == "FINISHED", tags.get("error")
        assert tags["baseline"] == "true" and tags["task"] == "regression"
        assert tags["test_hash"] == dm.lineage()["test_hash"]  # the neural runs' split
        assert tags["n_train"] == str(len(dm.train_idx)) and run.data.params["model"] == name
        for p in PARAMS:
            for key in (f"test/R2/{p}", f"test/MAE/{p}", f"test_informative/R2/{p}"):
                assert key in metrics and math.isfinite(metrics[key]), key
        assert "val/R2/overall" in metrics and "val/loss" in metrics
        for stage in ("test", "test_informative"):
            # the neural runs' summary keys (what MLflow shows); everything else is in metrics.json
            assert {k for k in metrics if k.startswith(f"{stage}/")} == {
                k for k in _neural_keys(stage) if is_summary(k)
            }
        assert len(metrics) <= 40 and {"train/loss", "val/loss", "val/R2/overall"} <= set(metrics)
        arts = {a.path for d in ("", "figures") for a in client.list_artifacts(run.info.run_id, d)}
        assert {"config.yaml", "metrics_table.md", "figures/pred_vs_true.png"} <= arts
        assert f"{name}: test R² HII_EFF_FACTOR" in proc.stdout
    assert runs["ridge"].data.metrics["test/R2/ION_Tvir_MIN"] > 0.5, runs["ridge"].data.metrics
    assert runs["knn"].data.metrics["test/R2/ION_Tvir_MIN"] > 0.5


def test_bad_hyperparameter_is_one_line_exit_2_and_a_failed_run(sweep, capsys):
    tmp, _, client, _ = sweep
    cfg = compose_cfg(
        "baselines",
        ["baseline=knn", "baseline.n_neighbors=0", *_paths(tmp), f"paths.output_dir={tmp}/bad"],
    )
    with pytest.raises(SystemExit) as exc:
        run_baselines(cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_neighbors" in err[0] and "conf/baseline/knn.yaml" in err[0], err
    exp = client.get_experiment_by_name("astrops")
    (failed,) = client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    assert failed.data.tags["model"] == "knn" and "n_neighbors" in failed.data.tags["error"]


def test_informative_mask():
    xH = np.array([[0.0, 0.01], [0.5, 1.0], [0.96, 0.99], [np.nan, 0.3], [0.05, 0.95]])
    assert informative_mask(xH).tolist() == [False, True, False, True, False]
    assert informative_mask(np.array([0.2, 1.0])).tolist() == [True, False]  # one redshift, 1-D


def test_too_few_training_spectra_for_knn_is_one_line(tmp_path, capfd):
    from conftest import run_in_process

    proc = run_in_process(
        "baselines.py",
        "baseline=knn",
        "data.train_size=5",
        "logger=none",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "baseline=knn" in line and "n_neighbors" in line and "data.* override" in line
