"""predict.py and astrops.load_model for probabilistic models (issue 18): quantile columns,
samples, corner plots, flow ensembles, and a clear refusal for point models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, compose_cfg, run_entry, run_in_process

from astrops.errors import InputError
from astrops.inference import load_model
from astrops.spectra_files import read_spectra_npz

EXAMPLES = ROOT / "data/examples/spectra_z8.npz"
QUANTILES = ("median", "lo68", "hi68", "lo95", "hi95")


def _train(tmp, *overrides):
    from conftest import train_ensemble_reported as train_ensemble
    from conftest import train_reported as train

    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/run",
            "logger=none",
            "callbacks.progress_bar=null",
            "saliency=false",
            "task=flow",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=10",
            "model.train_metrics=false",
            "data.test_fraction=0.05",
            "data.val_fraction=0.05",
            # 100 test / 100 validation spectra: each is decoded with 1 000 samples
            *overrides,
        ],
    )
    return (train_ensemble if cfg.ensemble.members > 1 else train)(cfg)[1]


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory) -> str:
    return _train(tmp_path_factory.mktemp("flow"))


@pytest.fixture(scope="module")
def flow_ensemble(tmp_path_factory) -> str:
    return _train(tmp_path_factory.mktemp("flows"), "ensemble.members=2", "trainer.max_epochs=1")


def test_predict_writes_quantiles_samples_and_corner_plots(flow_checkpoint, tmp_path):
    out = tmp_path / "pred.csv"
    proc = run_entry(
        "predict.py",
        f"ckpt_path={flow_checkpoint}",
        f"input={EXAMPLES}",
        f"output={out}",
        "samples=300",
        "plot=true",
        f"hydra.run.dir={tmp_path}/h",
    )
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    header = out.read_text().splitlines()[0].split(",")
    params = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
    assert header == [
        *params,
        *(f"{p}_std" for p in params),
        *(f"{p}_{q}" for p in params for q in QUANTILES),
        "ood_score",
        "out_of_distribution",
        "ood_reason",
    ]
    import pandas as pd

    table = pd.read_csv(out)
    n = len(table)
    model = load_model(flow_checkpoint)
    for p in params:
        lo, hi = model.prior_box[p]
        ordered = table[
            [f"{p}_lo95", f"{p}_lo68", f"{p}_median", f"{p}_hi68", f"{p}_hi95"]
        ].to_numpy()
        assert (
            (np.diff(ordered, axis=1) >= 0).all()
            and (ordered >= lo).all()
            and (ordered <= hi).all()
        )
    with np.load(tmp_path / "pred_samples.npz", allow_pickle=False) as z:
        assert z["samples"].shape == (n, 300, 3) and z["parameters"].tolist() == params
    assert sorted(p.name for p in tmp_path.glob("pred_corner_*.png")) == sorted(
        f"pred_corner_{i}.png" for i in range(n)
    )
    assert json.loads((tmp_path / "pred.json").read_text())["columns"] == header


def test_samples_are_reproducible_and_match_the_table(flow_checkpoint):
    model = load_model(flow_checkpoint)
    k, delta, _ = read_spectra_npz(EXAMPLES)
    a, b = model.sample(k, delta, 500), model.sample(k, delta, 500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.sample(k, delta, 500, seed=1)) and a.shape == (
        len(delta),
        500,
        3,
    )
    table = model.predict(k, delta)
    np.testing.assert_allclose(
        np.median(model.sample(k, delta, 4000), axis=1)[:, 0],
        table["HII_EFF_FACTOR_median"],
        # two Monte-Carlo estimates of one posterior median
        atol=0.05 * 195,
    )
    assert table.equals(model.predict(k, delta))  # the table's own samples are seeded


def test_a_flow_ensemble_is_a_mixture_with_its_base_recalibration_in_the_manifest(flow_ensemble):
    manifest = json.loads((ROOT / flow_ensemble / "manifest.json").read_text())
    loc, scale = (np.asarray(manifest["calibration"][k]) for k in ("base_loc", "base_scale"))
    assert loc.shape == scale.shape == (3,) and (scale > 0).all() and np.isfinite(loc).all()
    # one shared base, installed in every member on load (their own fits set aside)
    members = load_model(flow_ensemble).model.members
    for m in members:
        np.testing.assert_allclose(m.task.flow.base.scale.numpy(), scale, rtol=1e-6)
        np.testing.assert_allclose(m.task.flow.base.loc.numpy(), loc, atol=1e-6)
    model = load_model(flow_ensemble)
    k, delta, _ = read_spectra_npz(EXAMPLES)
    s = model.sample(k, delta, 1000)
    assert s.shape == (len(delta), 1000, 3)
    assert {"HII_EFF_FACTOR_lo95", "R_BUBBLE_MAX_hi68"} <= set(model.predict(k, delta).columns)
    # the ensemble's run (no MLflow here) left the calibration suite of its test split beside it
    run_dir = (ROOT / flow_ensemble).parent
    assert {
        "coverage_curve.json",
        "calibration.json",
        "coverage.md",
        "sbc.png",
        "tarp.png",
        "corner_5.png",
    } <= {p.name for p in run_dir.iterdir()}
    tarp = json.loads((run_dir / "calibration.json").read_text())["tarp"]
    assert len(tarp["ecp"]) == len(tarp["alpha"]) == 101 and tarp["ecp"][-1] == 1.0


def test_point_models_refuse_to_sample_in_one_line(dense_checkpoint, tmp_path, capfd):
    model = load_model(dense_checkpoint)
    k, delta, _ = read_spectra_npz(EXAMPLES)
    with pytest.raises(InputError, match="no posterior to sample.*task=gaussian or task=flow"):
        model.sample(k, delta, 10)
    # no intervals for point estimates
    assert "HII_EFF_FACTOR_lo68" not in model.predict(k, delta).columns
    out = tmp_path / "p.csv"
    proc = run_in_process(
        "predict.py",
        f"ckpt_path={dense_checkpoint}",
        f"input={EXAMPLES}",
        f"output={out}",
        "samples=10",
        capfd=capfd,
    )
    assert (
        proc.returncode == 2
        and len(proc.stderr.strip().splitlines()) == 1
        and "no posterior" in proc.stderr
    )
    assert not out.exists()  # refused before anything was written


def test_too_many_samples_or_plots_are_refused_before_any_work(flow_checkpoint, tmp_path, capfd):
    model = load_model(flow_checkpoint)
    k, delta, _ = read_spectra_npz(EXAMPLES)
    with pytest.raises(InputError, match="more than 5e\\+07 samples"):
        model.sample(k, delta, 10_000_000)
    many = tmp_path / "many.npz"
    np.savez(many, k=k, delta=np.repeat(delta, 25, axis=0))  # 250 spectra
    out = tmp_path / "p.csv"
    proc = run_in_process(
        "predict.py",
        f"ckpt_path={flow_checkpoint}",
        f"input={many}",
        f"output={out}",
        "plot=true",
        capfd=capfd,
    )
    assert (
        proc.returncode == 2
        and len(proc.stderr.strip().splitlines()) == 1
        and "at most 200 spectra" in proc.stderr
    )
    assert not out.exists()


def test_score_rebuilds_the_models_data_and_refuses_in_one_line(
    dense_checkpoint, tmp_path, capsys
):
    from astrops.entry.analysis import score_main as main

    out = tmp_path / "score.json"
    assert (
        main([dense_checkpoint, "--test-store", str(ROOT / "data/holdout"), "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("1000 test spectra") and "| R2 |" in printed
    results = json.loads(out.read_text())
    # z = 8, as the model was trained
    assert results["n_test"] == 1000 and 0.3 < results["test/R2/ION_Tvir_MIN"] < 1
    assert main([dense_checkpoint, "--test-store", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


@pytest.mark.parametrize(
    ("key", "index", "value", "says"),
    [
        ("task.quantile_map", (0, 5), float("nan"), "quantile_map"),
        ("task.flow.base.scale", (1,), -0.5, "base location or scale"),
        ("task.flow.base.loc", (0,), float("inf"), "base location or scale"),
    ],
)
def test_a_tampered_calibration_is_refused_as_damage(
    flow_checkpoint, tmp_path, key, index, value, says
):
    import torch

    ckpt = torch.load(flow_checkpoint, weights_only=True)
    ckpt["state_dict"][key][index] = value
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(InputError, match=f"{says}.*damaged"):
        load_model(bad)


def test_the_diagnostics_command_logs_the_suite_of_any_model_and_refuses_in_one_line(
    flow_ensemble, dense_checkpoint, tmp_path, capsys
):
    import mlflow

    from astrops.entry.diagnostics import diagnostics_main as main

    out, db = tmp_path / "diag", f"sqlite:///{tmp_path}/m.db"
    # 500 simulations at z = 7-10: the model's z = 8 is among them
    fresh = str(ROOT / "data/fresh")
    fresh_name = next(p.name for p in (ROOT / "data/fresh").iterdir() if p.is_dir())
    assert (
        main(
            [
                flow_ensemble,
                "--test-store",
                fresh,
                "--out",
                str(out),
                "--tracking-uri",
                db,
                "--experiment",
                "e",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        f"Test metrics ({fresh_name}, 500 test spectra)" in printed
        and "500 test spectra from" in printed
    )
    assert "| sbc_p |" in printed and "TARP ATC" in printed
    results = json.loads((out / "metrics.json").read_text())
    details = json.loads((out / "calibration.json").read_text())
    assert results["n_test"] == 500 and details["n"] == 500 and details["sbc"]["n_samples"] == 1000
    assert results["test/sbc_p/ION_Tvir_MIN"] == details["sbc"]["p_value"]["ION_Tvir_MIN"]
    curve = json.loads((out / "coverage_curve.json").read_text())
    assert curve["n"] == 500 and len(curve["coverage"]["R_BUBBLE_MAX"]) == 19
    client = mlflow.MlflowClient(db)
    run = client.search_runs([client.get_experiment_by_name("e-analysis").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "calibration"
    assert run.data.metrics["test/tarp_atc"] == pytest.approx(results["test/tarp_atc"])
    arts = {a.path for d in ("", "figures") for a in client.list_artifacts(run.info.run_id, d)}
    assert {
        "figures/sbc.png",
        "figures/tarp.png",
        "figures/corner_0.png",
        "coverage.md",
        "calibration.json",
    } <= arts
    # a point model, a used output directory: one line, exit 2, nothing written or changed
    before = sorted(p.name for p in out.iterdir())
    assert main([flow_ensemble, "--test-store", fresh, "--out", str(out), "--no-log"]) == 2
    assert (
        main([dense_checkpoint, "--test-store", fresh, "--out", str(tmp_path / "d2"), "--no-log"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "empty directory" in err[0] and "no predictive distribution" in err[1]
    assert sorted(p.name for p in out.iterdir()) == before and not (tmp_path / "d2").exists()


def test_a_regression_ensemble_is_neither_sampled_nor_calibration_checked(
    dense_checkpoint, tmp_path, capsys
):
    """One answer for a regression ensemble's spread: it is not an error bar (docs/accuracy.md),
    so predict refuses to sample it and the calibration suite refuses it, each in one line,
    before any data are read; predict still writes its ``<p>_std``."""
    import torch

    from astrops.checkpoints import save_ensemble
    from astrops.entry.diagnostics import diagnostics_main

    ens = save_ensemble(
        tmp_path / "ens",
        [dense_checkpoint, dense_checkpoint],
        {"var_scale": torch.tensor([1.5, 2.0, 0.5])},
        {"kind": "regression", "seeds": [1, 2]},
    )
    model = load_model(ens)
    k, delta, _ = read_spectra_npz(EXAMPLES)
    assert not model.model.has_distribution and "HII_EFF_FACTOR_std" in model.predict(k, delta)
    with pytest.raises(InputError, match="no posterior to sample.*not an error bar"):
        model.sample(k, delta, 10)
    out = tmp_path / "diag"
    assert (
        diagnostics_main([str(ens), "--test-store", str(tmp_path / "none"), "--out", str(out)])
        == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no predictive distribution to calibrate" in line and "not an error bar" in line
    assert not out.exists()
