"""The reference as a posterior of its own: the grid by mass, the emulator's error term, the fixed
covariance, self-consistency on its own mocks and the command for any observed spectrum."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT

from astrops.reference.grid import grid_posterior
from astrops.reference.likelihood import PowerSpectrumLikelihood

BOX = np.array([[5.0, 200.0], [4.0, 6.0], [5.0, 20.0]])


def test_the_grid_keeps_the_cells_that_hold_the_mass_not_a_level_set():
    """Half the mass in a sharp peak, half on the whole box: the plateau's ln L lies ~10 below the
    peak, where a level set (Δ ln L 4.5) would drop it; the mass rule keeps it."""
    mu, sd = np.array([60.0, 4.7, 12.0]), np.array([4.0, 0.02, 0.4])
    volume = np.prod(BOX[:, 1] - BOX[:, 0])
    peak = np.exp(-0.5 * np.sum(np.log(2 * np.pi * sd**2)))

    def loglike(t: np.ndarray) -> np.ndarray:
        g = peak * np.exp(-0.5 * (((t - mu) / sd) ** 2).sum(1))
        return np.log(0.5 * g + 0.5 / volume)

    assert np.log(peak * volume) > 9  # the plateau sits far below a level set's cut
    post = grid_posterior(loglike, BOX)
    expected = 0.5 * mu + 0.5 * BOX.mean(1)
    assert post.resolved
    assert np.all(np.abs(post.mean() - expected) < 0.02 * (BOX[:, 1] - BOX[:, 0]))


def test_the_emulator_error_is_the_excess_of_out_of_sample_residuals(emulator):
    from astrops.models.emulator import load_emulator

    emu = load_emulator(emulator[0])
    assert (emu.error_scale >= 0).all() and torch.allclose(
        emu.error_scale, emu.error_scale[:, :1].expand_as(emu.error_scale)
    )  # one η per redshift
    g = torch.Generator().manual_seed(0)
    theta = torch.tensor(BOX[:, 0]) + torch.rand(4000, 3, generator=g).double() * torch.tensor(
        BOX[:, 1] - BOX[:, 0]
    )
    with torch.no_grad():
        mean, var = emu(theta.float())
    # residuals with 1.5x the emulated variance: η = 0.5
    delta = mean + (1.5 * var).sqrt() * torch.randn(mean.shape, generator=g)
    emu.fit_error(theta.float(), delta)
    assert float(emu.error_scale[0, 0]) == pytest.approx(0.5, abs=0.05)
    assert torch.allclose(emu.error_var(var), 0.5 * var, rtol=0.1)


def test_a_fixed_covariance_is_the_normal_density_at_the_held_point():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    corr = np.corrcoef(a @ a.T + 6 * np.eye(6))
    data, noise = rng.normal(5, 1, (2, 3)), rng.uniform(0.1, 1, (2, 3))
    eta = np.full((2, 3), 0.3)
    lik = PowerSpectrumLikelihood(
        torch.tensor(data),
        torch.tensor(noise),
        corr=torch.tensor(corr),
        emulator_scale=torch.tensor(eta),
    )
    mean0, cv0 = rng.normal(5, 1, (2, 3)), rng.uniform(0.2, 2, (2, 3))
    held = lik.fixed_at(torch.tensor(mean0), torch.tensor(cv0))
    s = np.sqrt(cv0.ravel())
    cov = s[:, None] * corr * s[None, :] + np.diag((noise**2 + eta * cv0).ravel())
    means = rng.normal(5, 1, (4, 2, 3))
    got = held(torch.tensor(means)).numpy()
    want = [multivariate_normal(m.ravel(), cov).logpdf(data.ravel()) for m in means]
    # the same up to the θ-independent normalisation
    assert np.allclose(got - got[0], np.array(want) - want[0], atol=1e-8)
    # and the θ-dependent form at the held point is the same density, log-determinant included
    full = float(lik(torch.tensor(mean0)[None], torch.tensor(cv0)[None])[0])
    ref = multivariate_normal(mean0.ravel(), cov).logpdf(data.ravel()) + 3 * np.log(2 * np.pi)
    assert full == pytest.approx(ref, abs=2e-3)


@pytest.mark.parametrize("covariance", ["fixed", "theta"])
def test_the_reference_covers_its_own_mocks(emulator, tmp_path, covariance):
    """Mocks from its own generative model (z = 8, HERA-350 1 000 h): coverage and SBC hold."""
    from astrops.entry.reference_posterior import selfcheck_main

    out = tmp_path / "self.json"
    n = 40 if covariance == "fixed" else 12
    args = ["--emulator", emulator[0], "--observation", "hera350_1000h", "--n-mocks", str(n)]
    assert selfcheck_main([*args, "--covariance", covariance, "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["unresolved"] <= 2 and r["n"] == n - r["unresolved"]
    for level, cover in r["coverage"].items():
        se = r["coverage_se"][level]
        assert all(abs(c - float(level)) <= 3 * se for c in cover), (level, cover)
    assert min(r["sbc_p"]) >= 0.01


def _z8_input(path, k_scale: float = 1.0, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from astrops.store import Store

    ds = Store(ROOT / "data/holdout").dataset()
    recs = ds.load()
    np.savez(path, k=ds.k * k_scale, delta=recs.delta[:n, 1:2], redshifts=np.array([8.0]))
    return ds.k, recs.params[:n]


def test_the_posterior_command_writes_predicts_columns_and_refuses_bad_input(
    emulator, tmp_path, capsys
):
    import pandas as pd

    from astrops.entry.reference_posterior import posterior_main as main

    spectra = tmp_path / "obs.npz"
    k, truth = _z8_input(spectra)
    base = ["--emulator", emulator[0], "--observation", "hera350_1000h"]
    out = tmp_path / "ref.csv"
    assert main([*base, "--input", str(spectra), "--output", str(out), "--samples", "300"]) == 0
    table = pd.read_csv(out)
    params = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
    cols = [f"{p}{s}" for p in params for s in ("", "_std", "_median", "_lo68", "_hi68")]
    assert set(cols) <= set(table.columns) and len(table) == 3
    assert list(table.columns[-2:]) == ["out_of_distribution", "ood_reason"]
    assert (table["ION_Tvir_MIN_lo95"] <= table["ION_Tvir_MIN_hi95"]).all()
    s = np.load(tmp_path / "ref_samples.npz")
    assert s["samples"].shape == (3, 300, 3) and list(s["parameters"]) == params
    assert np.all((s["samples"] >= BOX[:, 0]) & (s["samples"] <= BOX[:, 1]))
    meta = json.loads((tmp_path / "ref.json").read_text())
    assert meta["observation"] == "hera350_1000h" and len(meta["per_spectrum"]) == 3
    # another k-grid inside the simulated range is interpolated, not refused
    shifted = tmp_path / "shifted.npz"
    _z8_input(shifted, k_scale=1.02)
    assert main([*base, "--input", str(shifted), "--output", str(tmp_path / "s.csv")]) == 0
    capsys.readouterr()
    # bad input: one line, exit 2, nothing written
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, k=k[15:], delta=np.ones((2, 1, len(k) - 15)), redshifts=np.array([8.0]))
    wrong_z = tmp_path / "z9.npz"
    np.savez(wrong_z, k=k, delta=np.ones((2, 1, len(k))), redshifts=np.array([9.0]))
    nan = tmp_path / "nan.npz"
    np.savez(nan, k=k, delta=np.full((2, 1, len(k)), np.nan), redshifts=np.array([8.0]))
    bad = [
        (wrong_z, "not the emulator's"),
        (narrow, "cannot be interpolated"),
        (nan, "NaN everywhere"),
    ]
    for path, _ in bad:
        assert main([*base, "--input", str(path), "--output", str(tmp_path / "x.csv")]) == 2
    assert main([*base, "--input", str(spectra), "--output", str(out)]) == 2  # exists
    assert main([*base[:3], "nowhere", "--input", str(spectra), "--output", "y.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5
    for line, (_, msg) in zip(err, bad, strict=False):
        assert msg in line
    assert "new .csv" in err[3] and "conf/observation" in err[4]
    assert not (tmp_path / "x.csv").exists() and not (ROOT / "y.csv").exists()
