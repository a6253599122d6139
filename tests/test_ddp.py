"""Lightning DDP with 2 CPU processes (gloo): one MLflow run, synchronised metrics, same numbers as
1 process."""

from __future__ import annotations

import mlflow
import numpy as np
from conftest import ROOT, run_entry

from astrops.data import SpectraDataModule
from astrops.inference import load_model

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def test_ddp_two_processes(tmp_path):
    proc = run_entry(
        "train.py",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=4",
        "callbacks.progress_bar=null",
        f"paths.output_dir={tmp_path}/run",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
        f"logger.mlflow.artifact_root={tmp_path}/a",
        f"hydra.run.dir={tmp_path}/h",
        cwd=tmp_path,
        timeout=600,
    )
    best = proc.stdout.strip().splitlines()[-1]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    runs = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    assert len(runs) == 1, "only rank 0 may create and log an MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    # each process trained on half of every epoch's permutation: half the steps of a single process
    n_train = int(run.data.tags["n_train"])
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 4
    # the logged (synchronised) test R² is the R² of the saved model over the whole test split
    dm = SpectraDataModule(str(ROOT / "data" / "reference"), dataset="reference", redshifts=[8.0])
    dm.prepare()
    assert len(dm.train_idx) == n_train
    pred = load_model(best).predict(dm.k, dm.delta[dm.test_idx][:, 0, :])[PARAMS].to_numpy()
    true = dm.params[dm.test_idx]
    r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    for j, p in enumerate(PARAMS):
        np.testing.assert_allclose(run.data.metrics[f"test/R2/{p}"], r2[j], atol=2e-4)
