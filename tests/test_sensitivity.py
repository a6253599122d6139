"""Noise tables of the observation layer (astrops.simulation.sensitivity, data/noise,
conf/observation)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from astrops.entry.noise_tables import noise_tables_main
from astrops.simulation import sensitivity as sens

ROOT = Path(__file__).resolve().parents[1]
NOISE = ROOT / "data" / "noise"
SHIPPED = [(name, z) for name, s in sens.OBSERVATIONS.items() for z in s.redshifts]


def sigma_at(observation: str, z: float, k: float) -> float:
    kk, errs = sens.load_table(NOISE / observation / sens.table_name(z))
    return float(np.interp(k, kk, errs))


def test_regenerated_table_equals_the_shipped_one():
    k, errs = sens.noise_table("hera350_1000h", 8.0)
    k0, errs0 = sens.load_table(NOISE / "hera350_1000h" / "z8.npz")
    np.testing.assert_allclose(k, k0, rtol=1e-9)
    np.testing.assert_allclose(errs, errs0, rtol=1e-6)


@pytest.mark.parametrize("name,z", SHIPPED)
def test_shipped_table_format(name, z):
    with np.load(NOISE / name / sens.table_name(z), allow_pickle=False) as f:
        assert sorted(f.files) == ["errs", "k"]
        k, errs = f["k"], f["errs"]
    assert k.ndim == 1 and k.shape == errs.shape and len(k) > 20
    assert np.isfinite(k).all() and np.isfinite(errs).all() and (errs > 0).all()
    assert (np.diff(k) > 0).all()
    # covers 21CMMC's k-range 0.1-1 (SKA-Low starts at 0.13-0.15)
    assert k[0] < 0.16 and k[-1] > 1.0


# Stack notes: HERA-350, 1 000 h, moderate, thermal sigma [mK^2] at k = 0.11 / 0.50 / 0.85 1/Mpc.
NOTES_ANCHOR = {7.0: (0.09, 0.6, 6.4), 8.0: (0.16, 1.1, 13.0), 10.0: (0.56, 3.8, 48.0)}


@pytest.mark.parametrize("z", sorted(NOTES_ANCHOR))
def test_anchor_at_low_k(z):
    assert sigma_at("hera350_1000h", z, 0.11) == pytest.approx(NOTES_ANCHOR[z][0], rel=0.10)


@pytest.mark.parametrize("name", ["hera350_1000h", "hera350_100h"])
def test_thermal_noise_scales_as_k_cubed_where_no_mode_is_excised(name):
    # HERA: from k ~ 0.5 up the wedge excises nothing and every uv cell adds one k-parallel mode
    # per k-bin, so sigma ~ k^3 X^2 Y Tsys^2 / t (not SKA-Low: its km-long baselines push the wedge
    # past k = 0.5).
    ratio = sigma_at(name, 8.0, 0.85) / sigma_at(name, 8.0, 0.5)
    assert ratio == pytest.approx((0.85 / 0.5) ** 3, rel=0.05)


def test_noise_scales_with_observing_time_and_foreground_model():
    # thermal-noise dominated: sigma ~ 1/t (167 vs 17 nights); the optimistic wedge keeps more
    # low-k modes
    assert sigma_at("hera350_100h", 8.0, 0.5) / sigma_at(
        "hera350_1000h", 8.0, 0.5
    ) == pytest.approx(167 / 17, rel=0.02)
    assert sigma_at("hera350_1000h_optimistic", 8.0, 0.11) < 0.5 * sigma_at(
        "hera350_1000h", 8.0, 0.11
    )
    assert sigma_at("hera350_1000h_optimistic", 8.0, 0.85) == pytest.approx(
        sigma_at("hera350_1000h", 8.0, 0.85), rel=0.01
    )


@pytest.mark.parametrize("name", sorted(sens.OBSERVATIONS))
def test_21cmmc_reads_and_checks_the_shipped_tables(name, tmp_path):
    """21CMMC's own Likelihood1DPowerCoeval reads the noise files, checks them (one per redshift,
    keys k and errs) and uses them in its likelihood; its core is constructed, never run."""
    from py21cmmc import CoreCoevalModule, Likelihood1DPowerCoeval
    from py21cmmc.mcmc import build_computation_chain

    zs = list(sens.OBSERVATIONS[name].redshifts)
    k = np.geomspace(0.1, 1.0, 12)
    datafiles = []
    for z in zs:
        datafiles.append(str(tmp_path / f"data_z{z:g}.npz"))
        np.savez(datafiles[-1], k=k, delta=np.full_like(k, 10.0))
    lk = Likelihood1DPowerCoeval(
        datafile=datafiles,
        noisefile=[str(NOISE / name / sens.table_name(z)) for z in zs],
        simulate=False,
    )
    build_computation_chain(
        CoreCoevalModule(redshift=zs, user_params={"HII_DIM": 50, "BOX_LEN": 125.0}),
        lk,
        setup=False,
    )
    lk.setup()  # reads data and noise, checks one noise file per redshift and its format
    assert len(lk.noise) == len(zs)
    for z, n, spline in zip(zs, lk.noise, lk.noise_spline, strict=True):
        k0, errs0 = sens.load_table(NOISE / name / sens.table_name(z))
        np.testing.assert_array_equal(n["errs"], errs0)
        np.testing.assert_allclose(spline(k0), errs0, rtol=1e-12)
    model = [{"k": k, "delta": np.full_like(k, 12.0)} for _ in zs]
    assert np.isfinite(lk.computeLikelihood(model))
    with_noise = lk.computeLikelihood(model)
    lk.noise = None
    del lk.noise_spline
    assert lk.computeLikelihood(model) < with_noise  # the noise widens the likelihood


def test_tables_hash_follows_content_not_bytes(tmp_path):
    copy = tmp_path / "t"
    shutil.copytree(NOISE / "hera350_1000h", copy)
    h = sens.tables_hash(copy)
    assert h == sens.tables_hash(NOISE / "hera350_1000h")
    k, errs = sens.load_table(copy / "z8.npz")
    sens.save_table(copy / "z8.npz", k, errs)  # rewritten: new zip timestamps, same content
    assert sens.tables_hash(copy) == h
    errs[10] *= 1.0001
    sens.save_table(copy / "z8.npz", k, errs)
    assert sens.tables_hash(copy) != h
    (copy / "z8.npz").unlink()
    assert sens.tables_hash(copy) != h
    with pytest.raises(FileNotFoundError):
        sens.tables_hash(tmp_path / "empty")


def test_cli_resumes_without_recomputing(tmp_path, capsys):
    shutil.copytree(NOISE / "ska_low_1000h", tmp_path / "ska_low_1000h")
    assert noise_tables_main(["ska_low_1000h", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 4 and sens.tables_hash(NOISE / "ska_low_1000h")[:16] in out


def test_configs_match_the_specs():
    for name, spec in sens.OBSERVATIONS.items():
        cfg = yaml.safe_load((ROOT / "conf" / "observation" / f"{name}.yaml").read_text())
        assert (cfg["name"], cfg["instrument"], cfg["hours"], cfg["foreground"]) == (
            name,
            spec.instrument,
            spec.hours,
            spec.foreground,
        )
        assert cfg["tables_dir"] == f"${{paths.data_dir}}/noise/{name}"
        assert (cfg["min_k"], cfg["max_k"]) == (0.1, 1.0)
    none = yaml.safe_load((ROOT / "conf" / "observation" / "none.yaml").read_text())
    assert none["name"] == "none" and none["tables_dir"] is None
    files = sorted((ROOT / "conf" / "observation").glob("*.yaml"))
    limits = [p.stem for p in files if yaml.safe_load(p.read_text()).get("kind") == "upper_limits"]
    assert limits == ["hera_h1c_idr3"]  # published limits: the reference's, not noise tables
    assert sorted(p.stem for p in files) == sorted([*sens.OBSERVATIONS, "none", *limits])


def test_metadata():
    assert sens.observation_metadata("none") == {"observation": "none"}
    meta = sens.observation_metadata("hera350_100h", NOISE / "hera350_100h")
    assert meta["instrument"] == "HERA-350" and meta["hours"] == 100 and meta["n_days"] == 17
    assert meta["foreground"] == "moderate" and meta["redshifts"] == [7.0, 8.0, 9.0, 10.0]
    assert meta["tables_hash"] == sens.tables_hash(NOISE / "hera350_100h")
    with pytest.raises(ValueError, match="unknown observation"):
        sens.spec("lofar")
