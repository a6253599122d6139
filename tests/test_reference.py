"""The likelihood-based reference (issue 20): 21CMMC's own likelihood, the grid posterior, the
fixed-θ design."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_cfg

from astrops.data.observation import Observation
from astrops.errors import SimulationConfigError
from astrops.reference.grid import grid_posterior
from astrops.reference.likelihood import PowerSpectrumLikelihood
from astrops.simulation import Design
from astrops.store import Store

NOISE = ROOT / "data/noise/hera350_1000h"
PRIORS = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 20.0]}


@pytest.mark.parametrize("f", [0.0, 0.15])
def test_without_cosmic_variance_and_log_det_it_is_21cmmcs_own_likelihood(f):
    """Two real reference spectra at z = 7-10 as model and data, HERA's noise files, 21CMMC's
    computeLikelihood."""
    from py21cmmc.likelihood import Likelihood1DPowerCoeval

    class Coeval(Likelihood1DPowerCoeval):
        # computeLikelihood's branch for a coeval core (no 21cmEMU), without running one
        paired_core = None

    recs = Store(ROOT / "data/reference").dataset("reference").load()
    k, zs = Store(ROOT / "data/reference").dataset("reference").k, [7.0, 8.0, 9.0, 10.0]
    i_model, i_data = int(np.argmax(recs.delta[:, 1, 5])), 3
    lk = Coeval(min_k=0.1, max_k=1.0, model_uncertainty=f)
    lk.data = [{"k": k, "delta": recs.delta[i_data, i]} for i in range(4)]
    lk.noise = [dict(np.load(NOISE / f"z{z:g}.npz")) for z in zs]
    expected = lk.computeLikelihood([{"k": k, "delta": recs.delta[i_model, i]} for i in range(4)])

    # what training and the mocks use
    sigma = Observation("hera350_1000h", str(NOISE), 0.1, 1.0).sigma(k, zs)
    measured = np.isfinite(sigma)
    assert measured.sum() > 20 and not measured.all()
    per_z = []
    for i in range(4):
        m = measured[i]
        lik = PowerSpectrumLikelihood(
            torch.tensor(recs.delta[i_data, i, m])[None],
            torch.tensor(sigma[i, m])[None],
            model_error=f,
            cosmic_variance=False,
            log_det=False,
        )
        per_z.append(float(lik(torch.tensor(recs.delta[i_model, i, m])[None, None])))
    assert abs(float(expected)) > 1.0
    assert sum(per_z) == pytest.approx(float(expected), rel=0, abs=1e-10)
    # the reference's two additions change it: a model-dependent variance brings its
    # log-determinant
    full = PowerSpectrumLikelihood(
        torch.tensor(recs.delta[i_data, :, :])[None], torch.ones(1, 4, len(k)), f
    )
    with pytest.raises(ValueError, match="cosmic variance"):
        full(torch.tensor(recs.delta[i_model])[None])


def test_the_correlated_likelihood_is_the_multivariate_normal_density():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 8))
    corr = np.corrcoef(a @ a.T + 8 * np.eye(8))
    data, noise = rng.normal(5, 1, (2, 4)), rng.uniform(0.1, 1, (2, 4))
    mean, cv = rng.normal(5, 1, (3, 2, 4)), rng.uniform(0.2, 2, (3, 2, 4))
    lik = PowerSpectrumLikelihood(
        torch.tensor(data), torch.tensor(noise), 0.15, corr=torch.tensor(corr)
    )
    got = lik(torch.tensor(mean), torch.tensor(cv)).numpy()
    for b in range(3):
        s = np.sqrt(cv[b].ravel())
        cov = s[:, None] * corr * s[None, :] + np.diag((noise**2 + (0.15 * mean[b]) ** 2).ravel())
        want = multivariate_normal(mean[b].ravel(), cov).logpdf(data.ravel()) + 0.5 * 8 * np.log(
            2 * np.pi
        )
        assert got[b] == pytest.approx(want, abs=2e-3)  # float32 Cholesky
    diagonal = PowerSpectrumLikelihood(
        torch.tensor(data), torch.tensor(noise), 0.15, corr=torch.eye(8, dtype=torch.float64)
    )
    plain = PowerSpectrumLikelihood(torch.tensor(data), torch.tensor(noise), 0.15)
    assert diagonal(torch.tensor(mean), torch.tensor(cv)).numpy() == pytest.approx(
        plain(torch.tensor(mean), torch.tensor(cv)).numpy(), abs=2e-3
    )


@pytest.mark.parametrize("rho", [0.0, 0.95])
def test_the_grid_posterior_recovers_a_known_gaussian_at_a_fifth_of_its_sigma(rho):
    mu, sd = np.array([60.0, 4.73, 12.0]), np.array([15.0, 0.03, 2.5])
    cov = np.diag(sd**2)
    # ζ–T_vir degeneracy: a thin diagonal ridge at ρ = 0.95
    cov[0, 1] = cov[1, 0] = rho * sd[0] * sd[1]
    icov = np.linalg.inv(cov)
    post = grid_posterior(
        lambda t: -0.5 * np.einsum("bi,ij,bj->b", t - mu, icov, t - mu),
        np.array(list(PRIORS.values())),
    )
    assert post.resolved and post.stages >= 2
    steps = np.array([e[1] - e[0] for e in post.edges])
    assert np.all(steps <= post.std() / 5)
    assert np.all(np.abs(post.mean() - mu) < 0.05 * sd)
    # R_mfp is cut by the prior at 5 Mpc: narrower
    assert post.std()[:2] == pytest.approx(sd[:2], rel=0.04)
    assert np.all(
        np.abs(post.quantile([0.025, 0.975]) - (mu + np.outer([-1.96, 1.96], sd)))[:, :2]
        < 0.15 * sd[:2]
    )
    s = post.sample(20000, np.random.default_rng(0))
    assert s.mean(0) == pytest.approx(mu, rel=5e-3) and np.all(
        (s >= [5, 4, 5]) & (s <= [200, 6, 20])
    )


def test_a_fixed_design_repeats_each_point_with_distinct_seeds():
    d = Design(PRIORS, n=6, sampler="fixed", points=[[30, 4.7, 15], [60, 5.0, 10]])
    assert [d.point(i)["params"]["HII_EFF_FACTOR"] for i in range(6)] == [30, 30, 30, 60, 60, 60]
    assert len({d.point(i)["seed"] for i in range(6)}) == 6 and d.identity()["points"][1] == [
        60,
        5,
        10,
    ]
    for kw, msg in (
        (dict(n=5, points=[[30, 4.7, 15], [60, 5, 10]]), "not a multiple"),
        (dict(n=4, points=[[300, 4.7, 15]]), "outside the prior"),
        (dict(n=4), "needs simulation.points"),
    ):
        with pytest.raises(SimulationConfigError, match=msg):
            Design(PRIORS, sampler="fixed", **kw)
    with pytest.raises(SimulationConfigError, match="for simulation.sampler=fixed"):
        Design(PRIORS, n=4, points=[[30, 4.7, 15]])


# -- the emulator and the comparison, end to end on small models (z = 8, HERA-350 1 000 h)
# ------------------

HERA = ["observation=hera350_1000h", "data.feature_transform=raw"]


def _hera_model(tmp, task: str) -> str:
    from astrops.training import train

    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/run",
            "logger=none",
            "callbacks.progress_bar=null",
            "saliency=false",
            f"task={task}",
            "trainer.max_epochs=2",
            "model.train_metrics=false",
            "data.test_fraction=0.05",
            "data.val_fraction=0.05",
            *HERA,
        ],
    )
    return train(cfg)[1]


def test_the_emulator_is_a_tracked_run_whose_file_loads_as_plain_tensors(emulator):
    import mlflow

    from astrops.models.emulator import load_emulator

    path, db = emulator
    emu = load_emulator(path)
    theta = torch.tensor([[30.0, 4.7, 15.0], [150.0, 4.2, 15.0]])
    mean, var = emu(theta)
    assert mean.shape == var.shape == (2, 1, len(emu.bins)) and (var > 0).all()
    # ζ = 150 at Tvir 10^4.2 K has ionized most of the box by z = 8
    assert mean[0].mean() > mean[1].mean()
    client = mlflow.MlflowClient(db)
    run = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.metrics["test/R2_mean/z8"] > 0.5
    assert 0.4 < run.data.metrics["test/within1sigma/z8"] < 0.9
    assert any(
        a.path.endswith("emulator.pt") for a in client.list_artifacts(run.info.run_id, "emulator")
    )
    torch.save({"format": "something else"}, Path(path).with_name("bad.pt"))
    Path(path).with_name("junk.pt").write_text("not a torch file")
    for name in ("bad.pt", "junk.pt"):
        with pytest.raises(ValueError, match="not an astrops emulator") as err:
            load_emulator(str(Path(path).with_name(name)))
        assert "weights_only" not in str(err.value)


def test_the_emulator_refuses_noisy_training_data(tmp_path):
    from astrops.errors import DataConfigError
    from astrops.training.emulator import train_emulator

    cfg = compose_cfg(
        "train",
        [
            "experiment=emulator",
            "observation=hera350_1000h",
            f"paths.output_dir={tmp_path}",
            "logger=none",
        ],
    )
    with pytest.raises(DataConfigError, match="data.observation=none"):
        train_emulator(cfg)
    assert not (tmp_path / "emulator.pt").exists()


def test_compare_writes_the_table_figures_and_run_and_refuses_a_noiseless_model(
    emulator, dense_checkpoint, tmp_path_factory, capsys
):
    import mlflow
    import pandas as pd

    from astrops.entry.reference import reference_main as main

    tmp = tmp_path_factory.mktemp("cmp")
    flow, gauss = _hera_model(tmp / "f", "flow"), _hera_model(tmp / "g", "gaussian")
    out, db = tmp / "out", f"sqlite:///{tmp}/m.db"
    args = [
        "--emulator",
        emulator[0],
        "--flow",
        flow,
        "--gaussian",
        gauss,
        "--test-store",
        str(ROOT / "data/holdout"),
        "--n-mocks",
        "3",
    ]
    assert main([*args, "--out", str(out), "--tracking-uri", db]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == 2 * 3 * 3 and set(table["model"]) == {"flow", "gaussian", "reference"}
    per_mock = pd.read_csv(out / "per_mock.csv")
    assert len(per_mock) == 2 * 3 * 3 * 3
    ref = per_mock[per_mock["model"] == "reference"]
    assert ref["grid_resolved"].all()
    summary = (out / "summary.json").read_text()
    assert '"unresolved_mocks": []' in summary and '"covariance": "fixed"' in summary
    # HERA constrains T_vir (prior σ: 0.58)
    assert ref[ref["parameter"] == "ION_Tvir_MIN"]["std"].max() < 0.5
    tvir = ref[ref["parameter"] == "ION_Tvir_MIN"].groupby("f")["std"].mean()
    assert tvir[0.15] >= 0.99 * tvir[0.0]  # f only adds variance (held at θ̂: a small change)
    flow_rows = per_mock[(per_mock["model"] == "flow") & (per_mock["f"] == 0.0)].reset_index()
    ref0 = ref[ref["f"] == 0.0].reset_index()
    shift = np.abs(flow_rows["mean"] - ref0["mean"]) / ref0["std"]
    assert np.allclose(shift, flow_rows["shift_in_ref_sigma"])  # the table's shifts are these
    # the JS floor (two sets of reference draws) is below the flow's divergence from the reference
    assert ref0["js"].median() < flow_rows["js"].median()
    assert {"corner_mock_0.png", "corner_mock_2.png", "comparison.md", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    client = mlflow.MlflowClient(db)
    run = client.search_runs([client.get_experiment_by_name("astrops-analysis").experiment_id])[0]
    assert (
        run.data.tags["kind"] == "reference-comparison"
        and "f0/flow/median_abs_shift/ION_Tvir_MIN" in run.data.metrics
    )
    capsys.readouterr()
    for flow_arg, gauss_arg in (
        (dense_checkpoint, gauss),
        (gauss, flow),
        (flow, dense_checkpoint),
    ):
        assert (
            main(
                [
                    "--emulator",
                    emulator[0],
                    "--flow",
                    flow_arg,
                    "--gaussian",
                    gauss_arg,
                    "--test-store",
                    str(ROOT / "data/holdout"),
                    "--out",
                    str(tmp / "o2"),
                    "--no-log",
                ]
            )
            == 2
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 3
        and "--flow is a regression model" in err[0]
        and "--flow is a gaussian model" in err[1]
    )
    assert "--gaussian is a regression model" in err[2] and not (tmp / "o2").exists()


def test_the_emulator_check_compares_seed_averages_and_refuses_a_used_directory(
    emulator, tmp_path, capsys
):
    import pandas as pd

    from astrops.entry.reference import emulator_check_main as main

    out = tmp_path / "check"
    assert main([emulator[0], "--store", str(ROOT / "data/seeds"), "--out", str(out)]) == 0
    rows = pd.read_csv(out / "emulator_check.csv")
    assert (
        set(rows["n_seeds"]) == {30} and rows["point"].nunique() == 6 and set(rows["z"]) == {8.0}
    )
    assert rows["k"].between(0.1, 1.0).all() and (rows["error_in_sigma_total"] >= 0).all()
    # the seed mean's own error counts in quadrature: never fewer bins pass than at 20 % alone
    assert (rows["sigma_emu"] >= 0).all() and (
        rows["within_tolerance"] >= (rows["error_in_sigma_total"] <= 0.2)
    ).all()
    # what a 30-seed average can resolve: its own error is a fraction of the total σ
    assert rows["seed_mean_error_in_sigma_total"].median() < 0.2
    assert (
        "| all | 30 |" in (out / "emulator_check.md").read_text()
        and (out / "emulator_check.png").is_file()
    )
    capsys.readouterr()
    assert main([emulator[0], "--store", str(ROOT / "data/seeds"), "--out", str(out)]) == 2
    assert (
        main([emulator[0], "--store", str(ROOT / "data/reference"), "--out", str(tmp_path / "c2")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "empty directory" in err[0] and "simulated once" in err[1]
