"""Applying a model is torch + numpy: no Lightning, MLflow, torchmetrics (nor pandas for
predict.py), and every checkpoint the LightningModule wrote loads into the plain module (issue 15;
timings are in ``benchmarks/startup.py`` and docs/benchmarks.md, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from astrops.checkpoints import load_estimator, save_ensemble
from astrops.inference import Predictor, load_model
from astrops.models import ClassificationTask, GaussianTask, RegressionTask, SpectrumModel
from astrops.spectra_files import write_csv

# A tiny dense regression model (8 hidden units, 3 epochs) written by train.py before the inference
# part of ParameterEstimator became SpectrumModel, and what that code's predict.py wrote for the
# bundled examples.
OLD = ROOT / "tests" / "data" / "dense_tiny_before_split.ckpt"
OLD_PREDICTIONS = ROOT / "tests" / "data" / "dense_tiny_before_split_predictions.csv"
EXAMPLES = ROOT / "data" / "examples" / "spectra_z8.npz"
TRAINING_ONLY = {"lightning", "pytorch_lightning", "mlflow", "torchmetrics", "optuna"}

# Runs a script (argv[1:]) as __main__, then prints which top-level packages the process had
# imported.
MODULES = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules}))))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def imported(proc: subprocess.CompletedProcess) -> set[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(
        json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES ")][-1][8:])
    )


def run_script(tmp_path, *argv: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", MODULES, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "ASTROPS_ROOT": str(ROOT),
            "HYDRA_FULL_ERROR": "1",
        },
        timeout=300,
    )
    return imported(proc)


def test_a_checkpoint_written_before_the_split_loads_into_the_plain_module():
    state = torch.load(OLD, map_location="cpu", weights_only=True)["state_dict"]
    model, meta = load_estimator(OLD)
    assert type(model) is SpectrumModel  # not the LightningModule
    # the asinh flag came later: an old checkpoint lacks it and loads with its default (False)
    assert set(model.state_dict()) - {"transform.asinh"} == set(state) and not bool(
        model.transform.asinh
    )
    assert {k.split(".")[0] for k in state} == {"transform", "backbone", "task"}
    assert not model.load_state_dict(state, strict=True).missing_keys
    ex = np.load(EXAMPLES)
    got = load_model(OLD).predict(ex["k"], ex["delta"])
    want = pd.read_csv(OLD_PREDICTIONS)
    # no OOD score in a checkpoint from before it: the column is there, NaN
    assert list(got.columns) == [*meta["parameters"], "ood_score", *want.columns[3:]]
    assert got["ood_score"].isna().all()
    np.testing.assert_allclose(
        got[meta["parameters"]].to_numpy(), want[meta["parameters"]].to_numpy(), rtol=1e-6
    )
    assert got["out_of_distribution"].tolist() == want["out_of_distribution"].tolist()


def test_the_training_module_is_the_plain_module_plus_training_and_adds_no_weights(
    dense_checkpoint,
):
    from astrops.models import ParameterEstimator  # the lazy attribute

    # written by Lightning with the current ParameterEstimator
    plain, meta = load_estimator(dense_checkpoint)
    trained = ParameterEstimator(
        plain.backbone, plain.task, plain.transform, meta["parameters"], meta=meta
    )
    assert isinstance(trained, SpectrumModel) and trained.param_names == plain.param_names
    state = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert set(trained.state_dict()) == set(plain.state_dict()) == set(state)
    x = torch.as_tensor(np.nan_to_num(np.load(EXAMPLES)["delta"][:, None]), dtype=torch.float32)
    assert torch.equal(
        trained.eval().predict_physical(x)["value"], plain.eval().predict_physical(x)["value"]
    )
    assert trained.device == plain.device == torch.device("cpu")


def test_load_model_and_predict_import_neither_lightning_nor_mlflow(tmp_path):
    directory = save_ensemble(tmp_path / "ens", [str(OLD), str(OLD)], {}, {"kind": "regression"})
    script = tmp_path / "apply.py"
    script.write_text(
        "import sys, numpy as np, astrops, astrops.models\n"
        f"ex = np.load({str(EXAMPLES)!r})\n"
        f"one = astrops.load_model({str(OLD)!r}).predict(ex['k'], ex['delta'])\n"
        f"ens = astrops.load_model({str(directory)!r}).predict(ex['k'], ex['delta'])\n"
        "assert len(one) == len(ens) == 10 and 'HII_EFF_FACTOR_std' in ens.columns\n"
        "assert 'ParameterEstimator' in astrops.models.__all__\n"
    )
    loaded = run_script(tmp_path, str(script))
    assert "torch" in loaded and not loaded & TRAINING_ONLY, sorted(loaded & TRAINING_ONLY)


def test_predict_py_imports_neither_lightning_mlflow_nor_pandas(tmp_path):
    out = tmp_path / "p.csv"
    loaded = run_script(
        tmp_path,
        str(ROOT / "predict.py"),
        f"ckpt_path={OLD}",
        f"input={EXAMPLES}",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/h",
    )
    assert not loaded & (TRAINING_ONLY | {"pandas"}), sorted(loaded & (TRAINING_ONLY | {"pandas"}))
    want = pd.read_csv(OLD_PREDICTIONS)
    got = pd.read_csv(out)
    assert list(got.columns) == [*want.columns[:3], "ood_score", *want.columns[3:]]
    assert len(got) == len(want)
    np.testing.assert_allclose(got.iloc[:, :3].to_numpy(), want.iloc[:, :3].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("task_cls", [RegressionTask, GaussianTask, ClassificationTask])
def test_predict_py_csv_is_byte_for_byte_what_pandas_writes(task_cls, tmp_path):
    """write_csv (predict.py, no pandas) against DataFrame.to_csv(index=False) on every head's
    columns (float64 values, float32 probabilities, integer classes, booleans) and clipped rows
    whose reasons hold commas and brackets (quoted)."""
    base, meta = load_estimator(OLD)
    torch.manual_seed(0)
    model = SpectrumModel(
        base.backbone,
        task_cls(base.task.codec, base.backbone.out_features),
        base.transform,
        meta["parameters"],
        meta,
    )
    ex = np.load(EXAMPLES)
    values = Predictor(model, meta).columns(ex["k"], ex["delta"])["HII_EFF_FACTOR"]
    mid = float(np.median(values))
    narrow = {
        **meta,
        "prior_box": {**meta["prior_box"], "HII_EFF_FACTOR": [mid - 1e-3, mid + 1e-3]},
    }
    predictor = Predictor(model, narrow)
    columns = predictor.columns(ex["k"], ex["delta"])
    assert columns["out_of_distribution"].any() and any("," in r for r in columns["ood_reason"])
    write_csv(columns, tmp_path / "ours.csv")
    predictor.predict(ex["k"], ex["delta"]).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_write_csv_matches_pandas_on_awkward_values(tmp_path):
    cols = {
        "f64": np.array([0.1, 1e-300, np.nan, -2.5e16]),
        "f32": np.array([0.1, 3.0, np.nan, 1e-8], np.float32),
        "i": np.array([0, -3, 7, 2**40]),
        "b": np.array([True, False, True, False]),
        "s": np.array(["", 'say "hi"', "a, b", "two\nlines"], dtype=object),
    }
    write_csv(cols, tmp_path / "ours.csv")
    pd.DataFrame(cols).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
