"""Every trained model is an MLflow Model (issue 14): loaded without unpickling code (a
loader_module), with a signature and an input example; ``mlflow.pyfunc`` and ``mlflow models
predict`` return exactly predict.py's columns; ``register=true`` adds a Model Registry version with
the data lineage as tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, compose_cfg

import astrops
from astrops.errors import InputError
from astrops.spectra_files import read_spectra_npz
from astrops.tracking.mlflow_model import PyfuncPredictor, input_columns

EXAMPLES = ROOT / "data" / "examples" / "spectra_z8.npz"


def _overrides(tmp: Path, *extra: str) -> list[str]:
    return [
        f"paths.output_dir={tmp / 'run'}",
        f"paths.log_dir={tmp / 'logs'}",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"logger.mlflow.artifact_root={tmp}/artifacts",
        "callbacks.progress_bar=null",
        "saliency=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        *extra,
    ]


def _run(uri: str, run_name_part: str = ""):
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    return client, next(
        r for r in runs if run_name_part in r.info.run_name and "member" not in r.info.run_name
    )


@pytest.fixture(scope="module")
def gaussian(tmp_path_factory):
    """One quick Gaussian network trained through the real code with register=true."""
    from conftest import train_reported as train

    tmp = tmp_path_factory.mktemp("mlflow_model")
    _, best = train(compose_cfg("train", _overrides(tmp, "task=gaussian", "register=true")))
    uri = f"sqlite:///{tmp}/mlflow.db"
    client, run = _run(uri)
    previous = mlflow.get_tracking_uri() if os.environ.get("MLFLOW_TRACKING_URI") else None
    mlflow.set_tracking_uri(uri)  # runs:/ and models:/ URIs resolve against it
    yield {"tmp": tmp, "uri": uri, "best": best, "run": run, "client": client}
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def spectra():
    k, delta, _ = read_spectra_npz(EXAMPLES)
    return k, delta


def test_mlmodel_names_the_loader_module_and_holds_no_pickle(gaussian):
    run = gaussian["run"]
    assert run.data.tags["mlflow_model"].startswith("models:/")
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{run.info.run_id}/model", dst_path=str(gaussian["tmp"] / "dl")
        )
    )
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert (
        pyfunc["loader_module"] == "astrops.tracking.mlflow_model" and "python_model" not in pyfunc
    )
    assert not list(local.rglob("*.pkl")) and (local / pyfunc["data"]).suffix == ".ckpt"
    predictor = astrops.load_model(gaussian["best"])
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert (
        [c["name"] for c in inputs]
        == input_columns([8.0], predictor.kept_bins)
        == [f"z8_k{i}" for i in mlmodel["metadata"]["kept_bins"]]
    )
    assert {c["type"] for c in inputs} == {"double"}
    outputs = {c["name"]: c["type"] for c in json.loads(mlmodel["signature"]["outputs"])}
    assert (
        list(outputs)[:3] == list(predictor.parameters)
        and outputs["out_of_distribution"] == "boolean"
    )
    assert outputs["ood_reason"] == "string" and outputs["HII_EFF_FACTOR_std"] == "double"
    assert (local / "input_example.json").is_file()
    reqs = (local / "requirements.txt").read_text().split()
    assert [r.split("==")[0] for r in reqs] == [
        "torch",
        "lightning",
        "numpy",
        "pandas",
        "mlflow",
        "astrops",
    ]


def test_pyfunc_predicts_exactly_what_load_model_predicts(gaussian, spectra):
    k, delta = spectra
    predictor = astrops.load_model(gaussian["best"])
    expected = predictor.predict(k, delta)
    frame = PyfuncPredictor(predictor).frame(delta)
    for uri in (
        f"runs:/{gaussian['run'].info.run_id}/model",
        gaussian["run"].data.tags["mlflow_model"],
    ):
        got = mlflow.pyfunc.load_model(uri).predict(frame)
        pd.testing.assert_frame_equal(got, expected)
        params = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
        quantiles = [
            f"{p}_{q}" for p in params for q in ("median", "lo68", "hi68", "lo95", "hi95")
        ]
        assert list(got.columns) == [
            *params,
            *(f"{p}_std" for p in params),
            *quantiles,
            "ood_score",
            "out_of_distribution",
            "ood_reason",
        ]


def test_mlflow_models_predict_cli_returns_predict_columns(gaussian, spectra, tmp_path):
    k, delta = spectra
    predictor = astrops.load_model(gaussian["best"])
    PyfuncPredictor(predictor).frame(delta).to_csv(tmp_path / "spectra.csv", index=False)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.run(
        [
            str(mlflow_cli),
            "models",
            "predict",
            "-m",
            gaussian["run"].data.tags["mlflow_model"],
            "-i",
            str(tmp_path / "spectra.csv"),
            "-t",
            "csv",
            "--env-manager",
            "local",
            "-o",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": gaussian["uri"]},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    got = pd.DataFrame(out["predictions"] if isinstance(out, dict) else out)
    expected = predictor.predict(k, delta)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(
        got[predictor.parameters].to_numpy(float), expected[predictor.parameters], rtol=1e-12
    )


def test_registered_version_carries_the_lineage(gaussian):
    run = gaussian["run"]
    name, version = run.data.tags["registered_model"].removeprefix("models:/").split("/")
    assert name == "astrops-dense-gaussian"
    mv = gaussian["client"].get_model_version(name, version)
    assert mv.run_id == run.info.run_id
    for key in ("dataset_name", "dataset_hash", "split_seed", "test_hash", "n_train"):
        assert mv.tags[key] == run.data.tags[key]
    assert mv.tags["mlflow_run_id"] == run.info.run_id and mv.tags["kind"] == "network"
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    assert loaded.metadata.metadata["parameters"] == [
        "HII_EFF_FACTOR",
        "ION_Tvir_MIN",
        "R_BUBBLE_MAX",
    ]


def test_wrong_input_columns_are_refused_clearly(gaussian, spectra):
    _, delta = spectra
    model = PyfuncPredictor(astrops.load_model(gaussian["best"]))
    frame = model.frame(delta)
    first = frame.columns[0]
    with pytest.raises(InputError, match=rf"missing \['{first}'\].*expected exactly \['{first}'"):
        model.predict(frame.drop(columns=first))
    with pytest.raises(InputError, match=r"unexpected \['z9_k0'\]"):
        model.predict(frame.assign(z9_k0=1.0))
    with pytest.raises(InputError, match=rf"\['{first}'\] are not numeric"):
        model.predict(frame.assign(**{first: "a lot"}))
    assert isinstance(InputError("x"), ValueError)
    # through MLflow the signature is enforced first: a missing column is named there
    with pytest.raises(Exception, match=first):
        mlflow.pyfunc.load_model(gaussian["run"].data.tags["mlflow_model"]).predict(
            frame.drop(columns=first)
        )


def test_log_model_false_or_no_run_logs_nothing(gaussian, caplog):
    from omegaconf import OmegaConf

    from astrops.tracking.mlflow_model import log_trained_model

    # the hook training calls: nothing is touched (a run that is not one would fail if it were)
    assert (
        log_trained_model(OmegaConf.create({"log_model": False}), object(), gaussian["best"], None)
        is None
    )
    assert (
        log_trained_model(OmegaConf.create({"register": True}), None, gaussian["best"], None)
        is None
    )
    assert "register=true without an MLflow run" in caplog.text


def test_ensemble_logs_one_loadable_model(tmp_path, spectra):
    from conftest import train_ensemble_reported as train_ensemble

    cfg = compose_cfg(
        "train", _overrides(tmp_path, "task=classification", "ensemble.members=2", "register=true")
    )
    _, directory = train_ensemble(cfg)
    client, run = _run(f"sqlite:///{tmp_path}/mlflow.db", "ensemble")
    assert len(client.search_logged_models([run.info.experiment_id])) == 1  # members log none
    assert run.data.tags["registered_model"] == "models:/astrops-dense-classification-ensemble/1"
    k, delta = spectra
    predictor = astrops.load_model(directory)
    expected = predictor.predict(k, delta)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri() if os.environ.get("MLFLOW_TRACKING_URI") else None
    mlflow.set_tracking_uri(uri)
    try:
        got = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(
            PyfuncPredictor(predictor).frame(delta)
        )
    finally:
        mlflow.set_tracking_uri(previous)
    pd.testing.assert_frame_equal(got, expected)
    assert "HII_EFF_FACTOR_class" in got.columns and "HII_EFF_FACTOR_prob" in got.columns
