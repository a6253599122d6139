"""Bad input not covered elsewhere: every row of docs/errors.md has a test (here or named
there)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from astrops.data import SpectraDataModule
from astrops.entry.store import main as store_cli
from astrops.errors import InputError, StoreError
from astrops.inference import load_model
from astrops.store import Store
from astrops.training import train


@pytest.fixture(scope="module")
def multiz_checkpoint(tmp_path_factory):
    """A quick multi-redshift dense model (z = 7, 8) on the reference data."""
    from conftest import compose_cfg  # noqa: I001

    tmp = tmp_path_factory.mktemp("multiz")
    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/run",
            "logger.mlflow=null",
            "callbacks.progress_bar=null",
            "data.redshifts=[7.0,8.0]",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        ],
    )
    _, best = train(cfg)
    return best


def test_predict_input_checks(multiz_checkpoint):
    p = load_model(multiz_checkpoint)
    assert p.redshifts == [7.0, 8.0]
    good = np.ones((3, 2, 22))
    good[:, :, :2] = np.nan  # NaN in bins the model drops is fine
    assert len(p.predict(p.k, good, np.array([7.0, 8.0]))) == 3
    with pytest.raises(InputError, match="needs a 'redshifts' key"):
        p.predict(p.k, np.ones((3, 22)))  # a single-redshift input for a multi-redshift model
    with pytest.raises(InputError, match="differ from the model's"):
        p.predict(p.k, good, np.array([8.0, 9.0]))
    with pytest.raises(InputError, match="negative"):
        p.predict(p.k, -good, np.array([7.0, 8.0]))
    bad = good.copy()
    bad[1, 0, 7] = np.inf
    with pytest.raises(InputError, match="NaN/inf in k-bins the model uses"):
        p.predict(p.k, bad, np.array([7.0, 8.0]))
    with pytest.raises(InputError, match="k grid"):
        p.predict(p.k[:20], good[:, :, :20], np.array([7.0, 8.0]))  # wrong number of k-bins


def test_unknown_dataset_is_named_with_the_choices(tmp_path, capsys):
    ref = str(ROOT / "data" / "reference")
    with pytest.raises(StoreError, match=r"no dataset matches 'deadbeef'.*datasets: reference-"):
        SpectraDataModule(ref, dataset="deadbeef").prepare()
    assert store_cli(["info", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_import_refuses_out_of_prior_parameters_and_writes_nothing(tmp_path, capsys):
    k = load_k()
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "params.csv").write_text("HII_EFF_FACTOR,ION_Tvir_MIN,R_BUBBLE_MAX\n250.0,4.5,10.0\n")
    np.savez(raw / "0.npz", k=k, delta=np.ones(22))
    rc = store_cli(["import", str(tmp_path / "store"), "--csv", str(raw / "params.csv")])
    assert rc == 2
    assert "HII_EFF_FACTOR=250.0 lies outside the prior [5.0, 200.0]" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").datasets()


def load_k():
    return Store(ROOT / "data" / "reference").dataset("reference").k


def test_resume_from_missing_checkpoint_is_refused(tmp_path):
    from conftest import compose_cfg  # noqa: I001

    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp_path}/run",
            "logger.mlflow=null",
            f"ckpt_path={tmp_path}/gone/last.ckpt",
        ],
    )
    with pytest.raises(
        FileNotFoundError, match="ckpt_path=.* does not exist: give a checkpoint file"
    ):
        train(cfg)


def test_ensemble_with_several_devices_is_refused_before_training(tmp_path, capfd):
    from conftest import run_in_process  # noqa: I001

    proc = run_in_process(
        "train.py",
        "ensemble.members=3",
        "trainer=ddp",
        "logger=none",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "ensemble.members=3 with trainer.devices=2" in line and "trainer=default" in line
    assert not (tmp_path / "run" / "member_0").exists()


def test_predict_refuses_a_directory_that_is_not_an_ensemble(tmp_path):
    from conftest import run_entry  # noqa: I001

    (tmp_path / "notanensemble").mkdir()
    np.savez(tmp_path / "in.npz", k=load_k(), delta=np.ones((2, 22)))
    proc = run_entry(
        "predict.py",
        f"ckpt_path={tmp_path / 'notanensemble'}",
        f"input={tmp_path / 'in.npz'}",
        f"output={tmp_path / 'out.csv'}",
        f"hydra.run.dir={tmp_path}/h",
        check=False,
    )
    assert proc.returncode == 2 and not (tmp_path / "out.csv").exists()
    (line,) = proc.stderr.strip().splitlines()
    assert "without manifest.json" in line and "ensemble directory" in line


@pytest.mark.parametrize(
    "override, message",
    [
        ("ckpt_path=/tmp/any/last.ckpt", "every member would resume the same checkpoint"),
        ("callbacks=none", "needs callbacks.model_checkpoint"),
    ],
)
def test_ensemble_without_usable_checkpoints_is_refused_before_training(
    tmp_path, override, message, capfd
):
    from conftest import run_in_process  # noqa: I001

    proc = run_in_process(
        "train.py",
        "ensemble.members=2",
        override,
        "logger=none",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert message in line
    assert not (tmp_path / "run" / "member_0").exists()


def test_malformed_ensemble_manifest_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(
        '{"format": "astrops-ensemble/1", "members": ["../../etc/x.ckpt"]}'
    )
    with pytest.raises(
        InputError, match="'members' must list 2 to 64 distinct checkpoint file names"
    ):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("random bytes", "is not an npz file"),
        ("broken zip", "is a damaged npz (BadZipFile)"),
        ("truncated zip", "is not an npz file (BadZipFile)"),
        ("no spectra", "holds no spectra"),
        ("k on the wrong axis", "the last axis of delta must be the k-bins"),
    ],
)
def test_predict_refuses_damaged_or_empty_input_in_one_line(
    dense_checkpoint, tmp_path, capfd, case, needle
):
    """predict.py: a file that is not a valid npz, an input with 0 spectra and delta with the
    k-bins on another axis are refused in one line (exit 2) and nothing is written."""
    from conftest import run_in_process

    k = load_model(dense_checkpoint).k
    path = tmp_path / "in.npz"
    if case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == "broken zip":
        np.savez(path, k=k, delta=np.ones((2, len(k))))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\0" * 64 + data[len(data) // 2 + 64 :])
    elif case == "truncated zip":
        np.savez(path, k=k, delta=np.ones((2, len(k))))
        path.write_bytes(path.read_bytes()[:300])
    elif case == "no spectra":
        np.savez(path, k=k, delta=np.ones((0, len(k))))
    else:
        np.savez(path, k=k, delta=np.ones((3, len(k), 1)))
    proc = run_in_process(
        "predict.py",
        f"ckpt_path={dense_checkpoint}",
        f"input={path}",
        f"output={tmp_path}/out.csv",
        capfd=capfd,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert needle in line and "Traceback" not in proc.stderr
    if case == "k on the wrong axis":  # names the shape that was expected
        assert f"(N, 1, {len(k)})" in line
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.json").exists()


def test_more_ensemble_members_than_a_manifest_may_hold_is_refused_before_work(tmp_path, capfd):
    """train.py ensemble.members beyond the limit every ensemble loader applies (one home:
    astrops.limits) is refused by the rule table, before any data are read or run is made."""
    from conftest import run_in_process

    from astrops.limits import MAX_MEMBERS

    proc = run_in_process(
        "train.py",
        f"ensemble.members={MAX_MEMBERS + 1}",
        "logger=none",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert f"ensemble.members={MAX_MEMBERS + 1}" in line and f"<= {MAX_MEMBERS}" in line
    assert not (tmp_path / "run").exists()
