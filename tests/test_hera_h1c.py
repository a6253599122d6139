"""HERA's H1C IDR3 limits as an observation: read from the installed 21CMMC, models put on the
window functions as 21CMMC does, simulations at the bands, and the posterior command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from astrops.errors import ObservationError
from astrops.reference.band_powers import limits_path, load_bands, on_window_k
from astrops.reference.upper_limit import upper_limit_lnl
from astrops.store import Store

ROOT = Path(__file__).resolve().parents[1]
RELEASE = "py21cmmc:data/HERA_H1C_IDR3.npz"


def _store():
    ds = Store(ROOT / "data" / "hera_h1c").dataset("hera_h1c")
    return ds, ds.load()


def test_the_simulations_sit_at_the_band_centres_and_ship_complete():
    bands = load_bands(RELEASE)
    cfg = yaml.safe_load((ROOT / "conf" / "simulation" / "hera_h1c.yaml").read_text())
    assert sorted(cfg["redshifts"]) == pytest.approx(sorted(b.z for b in bands), abs=1e-5)
    ds, recs = _store()
    assert len(recs) >= 1500 and np.isfinite(recs.delta[:, :, 2:]).all()
    assert ds.redshifts == pytest.approx(cfg["redshifts"])
    assert "hera_h1c" in (ROOT / "data" / "hera_h1c" / "PROVENANCE.md").read_text()


def test_models_go_onto_the_windows_as_21cmmc_puts_them():
    """Real spectra at the bands, through 21CMMC's own reduce_data and computeLikelihood, against
    on_window_k + the upper-limit likelihood: equal to 1e-10."""
    from py21cmmc.likelihood import Likelihood1DPowerLightconeUpper

    bands = load_bands(RELEASE)
    ds, recs = _store()
    zs = np.array([b.z for b in bands])
    zi = [int(np.argmin(np.abs(np.asarray(ds.redshifts) - z))) for z in zs]
    ps = np.nan_to_num(recs.delta[:6][:, zi, :])  # 21CMMC's spectra carry no NaN bins
    lk = object.__new__(Likelihood1DPowerLightconeUpper)  # reduce_data needs only these
    lk.redshifts, lk.k = zs, [b.k_window for b in bands]
    lk.k_len = max(len(k) for k in lk.k)
    ctx = {"PS": ps, "PS_redshifts": zs, "k": np.asarray(ds.k)}
    theirs = lk.reduce_data(ctx)[0]
    ours = np.zeros(len(ps))
    for i, band in enumerate(bands):
        m = on_window_k(np.asarray(ds.k), recs.delta[:6][:, zi[i], :], band.k_window)
        assert m == pytest.approx(theirs["delta"][:, i, : len(band.k_window)], abs=1e-10)
        ours += upper_limit_lnl(m, band.limits, band.window)
    lk.data = [np.load(limits_path(RELEASE))]
    assert ours == pytest.approx(lk.computeLikelihood([theirs]), abs=1e-10)


def test_a_release_in_the_same_layout_loads_by_path_and_bad_ones_are_refused(tmp_path):
    path = limits_path(RELEASE)
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    renamed = {k.replace("band8", "band7.9"): v for k, v in data.items()}
    np.savez(tmp_path / "next.npz", **renamed)
    bands = load_bands(str(tmp_path / "next.npz"))
    assert [b.limits.shape for b in bands] == [(5, 19, 3), (5, 16, 3)]
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in data.items() if k != "wfband10"})
    with pytest.raises(ObservationError, match="lacks band/wfband/kwfband"):
        load_bands(str(tmp_path / "bad.npz"))
    with pytest.raises(ObservationError, match="not installed"):
        load_bands("no_such_package:data/x.npz")
    with pytest.raises(ObservationError, match="no file"):
        load_bands(str(tmp_path / "missing.npz"))
    with pytest.raises(ObservationError, match="does not cover the window"):
        on_window_k(np.linspace(0.3, 2, 10), np.ones((1, 10)), bands[0].k_window)


def test_networks_are_not_trained_on_upper_limits():
    from astrops.data.observation import Observation

    cfg = yaml.safe_load((ROOT / "conf" / "observation" / "hera_h1c_idr3.yaml").read_text())
    with pytest.raises(ObservationError, match="reference-limits"):
        Observation.from_config(cfg)


@pytest.fixture(scope="module")
def h1c_emulator(tmp_path_factory):
    """train.py experiment=emulator_h1c, few epochs: the emulator the command needs."""
    from conftest import run_entry

    tmp = tmp_path_factory.mktemp("emu_h1c")
    proc = run_entry(
        "train.py",
        "experiment=emulator_h1c",
        "trainer.max_epochs=8",
        f"paths.output_dir={tmp}/run",
        f"hydra.run.dir={tmp}/hydra",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp}/m.db",
        f"logger.mlflow.artifact_root={tmp}/art",
        "callbacks.progress_bar=null",
    )
    return proc.stdout.strip().splitlines()[-1], f"sqlite:///{tmp}/m.db"


def _limits(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "astrops", "reference-limits", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def _in_process(capsys, *args: str) -> tuple[int, str]:
    from astrops.entry.reference_limits import limits_main

    code = limits_main(list(args))
    return code, capsys.readouterr().err


def test_the_limits_command_writes_its_files_and_run(h1c_emulator, tmp_path, emulator, capsys):
    import mlflow

    emu, uri = h1c_emulator
    out = tmp_path / "lim"
    base = ["--emulator", emu, "--observation", "hera_h1c_idr3", "--tracking-uri", uri]
    proc = _limits(*base, "--out", str(out), "--store", "data/hera_h1c", "--samples", "500")
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "samples.npz", allow_pickle=False) as f:
        assert f["samples"].shape == (500, 3) and list(f["parameters"])[0] == "HII_EFF_FACTOR"
    bounds = pd.read_csv(out / "bounds.csv")
    assert list(bounds["parameter"]) == ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
    assert (bounds["lower95"] < bounds["upper95"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["excluded_volume_lr95"] <= 1 and summary["grid_resolved"]
    table = pd.read_csv(out / "limits_vs_simulations.csv")
    assert len(table) == sum(
        int(np.isfinite(b.limits[f, :, 0]).sum()) for b in load_bands(RELEASE) for f in range(5)
    )
    assert (table["max_sim_wdelta2"] > 0).all()
    # HERA's strongest IDR3 limit: Δ² ≤ 457 mK² at k = 0.34 h/Mpc, z = 7.9 (Δ² + 2σ in the file)
    best = table.loc[table["limit_2sigma"].idxmin()]
    assert best["z"] == pytest.approx(7.93, abs=0.01) and 440 < best["limit_2sigma"] < 480
    # with saturated spin temperature no simulation reaches any limit (docs/observations.md)
    assert summary["max_ratio_to_limit"] == pytest.approx(table["ratio"].max())
    assert table["ratio"].max() < 1
    assert (out / "corner_0.png").stat().st_size > 1000
    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("hera_h1c-analysis").experiment_id]
    )
    assert runs[0].data.metrics["excluded_volume_lr95"] == summary["excluded_volume_lr95"]
    # refusals: one line, exit 2, nothing written
    for args, words in (
        ([*base, "--out", str(out)], "new directory"),
        (["--emulator", emulator[0], *base[2:], "--out", str(tmp_path / "b")], "lack the band"),
        ([*base[:2], "--observation", "hera350_1000h", "--out", str(tmp_path / "c")], "--mock"),
    ):
        code, err = _in_process(capsys, *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not any((tmp_path / d).exists() for d in "bc")


def test_the_forecast_gives_the_same_numbers_for_one_mock(emulator, tmp_path, capsys):
    """A noise-table observation: one stored simulation plus one noise draw, the Gaussian
    reference; a HERA-350 1 000 h detection constrains what the H1C limits cannot."""
    out = tmp_path / "fc"
    code, err = _in_process(
        capsys,
        "--emulator", emulator[0], "--observation", "hera350_1000h", "--mock",
        str(ROOT / "data" / "fresh"), "--out", str(out), "--samples", "300", "--no-log",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth"]["HII_EFF_FACTOR"] > 0 and summary["mock_index"] == 0
    assert summary["information_gain_bits"] > 1 and summary["excluded_volume_lr95"] > 0.5
    assert (
        len(pd.read_csv(out / "bounds.csv")) == 3
        and not (out / "limits_vs_simulations.csv").exists()
    )


def test_limits_that_bite_exclude_prior_volume(h1c_emulator, tmp_path):
    """The same release with every limit 1 000 times tighter: the data now say something, and
    the command's numbers show it (bounds moved, prior volume disfavoured)."""
    from astrops.entry.reference_limits import run_limits
    from astrops.models.emulator import load_emulator
    from astrops.reference.limits import LimitsModel

    path = limits_path(RELEASE)
    with np.load(path) as f:
        data = {k: f[k].copy() for k in f.files}
    for key in ("band8", "band10"):
        data[key][..., 1] *= 1e-3
        data[key][..., 2] *= 1e-6
    np.savez(tmp_path / "tight.npz", **data)
    model = LimitsModel(load_emulator(h1c_emulator[0]), load_bands(str(tmp_path / "tight.npz")))
    (tmp_path / "o").mkdir()
    summary = run_limits(model.lnl, model.emu, tmp_path / "o", 200, 0)
    assert summary["excluded_volume_lr95"] > 0.05 and summary["information_gain_bits"] > 0.1
    bounds = pd.read_csv(tmp_path / "o" / "bounds.csv")
    assert (bounds["constraint"] != "none").any()
