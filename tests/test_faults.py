"""Faults and hostile input: full disk, pickled code in checkpoints and npz files, unreachable
server."""

from __future__ import annotations

import pickle
import signal
import subprocess
import time

import mlflow
import numpy as np
import pytest
import torch
from conftest import popen_entry, run_entry

from astrops.errors import InputError, TrackingError
from astrops.inference import load_model
from astrops.store import Store
from astrops.tracking import mlflow_logger, redact


class WritesAFile:
    """Unpickling this would create a marker file: proof that pickled code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_during_simulation_keeps_earlier_records(small_disk, small_sim_overrides):
    proc = run_entry(
        "simulate.py",
        *small_sim_overrides,
        "simulation.n=12",
        f"paths.store_dir={small_disk}/store",
        check=False,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert (
        "could not write records" in err and "No space left on device" in err and "intact" in err
    )
    ds = Store(small_disk / "store").dataset()
    r = ds.load()
    assert 0 < len(r) < 12 and np.isfinite(r.delta[:, :, 2:]).all()


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as fh:
        pickle.dump({"astrops": {}, "state_dict": WritesAFile(str(marker))}, fh)
    torch.save({"x": 1}, tmp_path / "ok.ckpt")
    with pytest.raises(InputError, match="not a safe astrops checkpoint"):
        load_model(evil)
    assert not marker.exists()
    np.savez(tmp_path / "x.npz", k=np.arange(3.0), delta=np.ones(3))
    proc = run_entry("predict.py", f"ckpt_path={evil}", f"input={tmp_path}/x.npz", check=False)
    assert proc.returncode == 2 and "refusing to load it" in proc.stderr
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.npz"
    np.savez(bad, k=np.arange(3.0), delta=np.array([WritesAFile(str(marker))], dtype=object))
    ckpt = tmp_path / "any.ckpt"
    torch.save({"x": 1}, ckpt)
    proc = run_entry("predict.py", f"ckpt_path={ckpt}", f"input={bad}", check=False)
    assert proc.returncode == 2 and "pickled Python objects" in proc.stderr
    assert not marker.exists()


def test_unreachable_tracking_server_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(TrackingError, match="unreachable"):
        mlflow_logger("astrops", "http://127.0.0.1:9/", check_server=True)
    assert time.perf_counter() - t0 < 10


def test_file_store_is_refused_with_the_fix():
    with pytest.raises(TrackingError, match="sqlite:////"):
        mlflow_logger("astrops", "./mlruns")


def test_credentials_are_redacted():
    assert (
        redact("https://alice:s3cret@mlflow.example.org/")
        == "https://alice:***@mlflow.example.org/"
    )
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_sigterm_during_training_then_resume(tmp_path):
    common = [
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        f"paths.output_dir={tmp_path}/run",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
        f"logger.mlflow.artifact_root={tmp_path}/a",
    ]
    proc = popen_entry("train.py", *common, "trainer.max_epochs=400", cwd=tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert rc == 130, stderr[-3000:]  # interrupted (astrops.entry.policy)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    exp = client.get_experiment_by_name("astrops").experiment_id
    (run,) = client.search_runs([exp])
    assert run.info.status == "KILLED" and "resume with: python train.py" in run.data.tags["error"]
    err = stderr.strip().splitlines()
    assert err[-1].startswith("interrupted; resume with: python train.py ") and err[-1].endswith(
        f"ckpt_path={last}"
    )
    assert "trainer.max_epochs=400" in err[-1] and "Traceback" not in "".join(err)
    done = torch.load(last, weights_only=True)["epoch"]
    assert 0 <= done < 399
    run_entry(
        "train.py", *common, f"trainer.max_epochs={done + 3}", f"ckpt_path={last}", cwd=tmp_path
    )
    (resumed,) = client.search_runs([exp])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    # continued, not restarted (the exact count depends on whether the kill landed before or after
    # the epoch's own checkpoint): one or two more epochs, in the same run
    assert done + 1 <= torch.load(last, weights_only=True)["epoch"] <= done + 2
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(losses) >= done + 2
