"""A real `mlflow server` on 127.0.0.1: train against it over HTTP and read the run back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import train_reported as train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server died: {proc.stderr.read()[-2000:]}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not come up in 90 s")
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def test_training_logs_to_a_real_server(tmp_path, mlflow_server, monkeypatch, train_cfg):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = train_cfg(
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        f"logger.mlflow.tracking_uri={mlflow_server}",
    )
    results, best = train(cfg)
    client = mlflow.MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("astrops").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/R2/ION_Tvir_MIN"] == pytest.approx(
        results["test/R2/ION_Tvir_MIN"]
    )
    local = client.download_artifacts(run.info.run_id, "metrics_table.md", str(tmp_path))
    assert "ION_Tvir_MIN" in Path(local).read_text()
    # artifacts went through the server into its own store, not into the project's directory
    assert any((tmp_path / "server-artifacts").rglob("metrics_table.md"))
    assert not os.path.exists(tmp_path / "artifacts")
