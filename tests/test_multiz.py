"""Multi-redshift inference end to end: store → data module → model → MLflow (with saliency) →
predict.py."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from conftest import ROOT, run_entry

from astrops.data import SpectraDataModule
from astrops.inference import load_model

Z = [7.0, 8.0, 9.0, 10.0]
PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def test_multiz_cnn_from_store_to_predict(tmp_path):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_entry(
        "train.py",
        "model=cnn",
        "data.redshifts=[7,8,9,10]",
        "trainer.max_epochs=3",
        "callbacks.progress_bar=null",
        f"logger.mlflow.tracking_uri={db}",
        f"logger.mlflow.artifact_root={tmp_path}/art",
        f"hydra.run.dir={tmp_path}/run",
    )
    best = proc.stdout.strip().splitlines()[-1]
    predictor = load_model(best)
    # 4 channels × 20 kept bins
    assert predictor.redshifts == Z and predictor.model.transform.mean.shape == (4, 20)

    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    assert run.data.tags["redshifts"] == str(Z)
    saliency = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "saliency.json", str(tmp_path))
        ).read_text()
    )
    for method in ("gradient", "permutation"):
        values = np.asarray(saliency[method])
        assert values.shape == (3, 4, 20) and np.isfinite(values).all(), method
    assert saliency["redshifts"] == Z
    assert "figures/saliency.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "figures")
    }

    # predict.py on (N, n_z, n_k) spectra with their redshifts gives the logged test metrics'
    # predictions
    dm = SpectraDataModule(str(ROOT / "data/reference"), "reference", redshifts=Z)
    dm.prepare()
    delta = dm.delta[dm.test_idx]
    assert delta.shape == (len(dm.test_idx), 4, 22)
    np.savez(tmp_path / "multi.npz", k=dm.k, delta=delta, redshifts=np.array(Z))
    out = tmp_path / "pred.csv"
    run_entry(
        "predict.py",
        f"ckpt_path={best}",
        f"input={tmp_path / 'multi.npz'}",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/p",
    )
    pred = pd.read_csv(out)[PARAMS].to_numpy()
    true = dm.params[dm.test_idx]
    r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2, [run.data.metrics[f"test/R2/{p}"] for p in PARAMS], atol=1e-4)

    # a single-redshift input is refused in one line, before anything is written
    np.savez(tmp_path / "single.npz", k=dm.k, delta=delta[:, 1, :], redshifts=np.array([8.0]))
    bad = run_entry(
        "predict.py",
        f"ckpt_path={best}",
        f"input={tmp_path / 'single.npz'}",
        f"output={tmp_path / 'bad.csv'}",
        f"hydra.run.dir={tmp_path}/p2",
        check=False,
    )
    assert bad.returncode == 2 and not (tmp_path / "bad.csv").exists()
    (line,) = bad.stderr.strip().splitlines()
    assert "redshifts [8.0] differ from the model's [7.0, 8.0, 9.0, 10.0]" in line
