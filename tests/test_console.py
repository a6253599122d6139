"""What a user sees: each line once, nothing they cannot act on, the model path as the very last
line."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, run_entry

NOISE = (
    "litlogger",
    "LeafSpec",
    "log_every_n_steps",
    "not found. Creating it",
    "GPU available",
    "TPU available",
    "Test metric ",
    "DataLoader 0",
    "Creating initial MLflow database",
    "Validating input example",
)


def test_a_training_run_prints_each_line_once_and_the_model_path_last(tmp_path):
    proc = run_entry(
        "train.py",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "saliency=false",
        "callbacks.progress_bar=null",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/m.db",
        f"logger.mlflow.artifact_root={tmp_path}/a",
        f"hydra.run.dir={tmp_path}/run",
    )
    out, err = proc.stdout.strip().splitlines(), proc.stderr.strip().splitlines()
    assert Path(out[-1]).is_file() and out[-1].endswith(".ckpt"), out[-3:]
    assert any(line.startswith("Test metrics (reference-") for line in out)
    assert any(
        line.startswith("MLflow run ") and "?workflowType=machine_learning" in line for line in out
    )
    lines = [line for line in out + err if line.strip() and not set(line) <= set("|-")]
    assert len(lines) == len(set(lines)), [line for line in lines if lines.count(line) > 1]
    assert not [line for line in lines if any(n in line for n in NOISE)]
    # no warnings here; the notes (dataset summary, timings) are in the log file
    assert err == [], err
    log = (tmp_path / "run" / "train.log").read_text()  # the log file keeps the libraries' lines
    assert "GPU available" in log and "Seed set to" in log and "dataset reference-" in log


def test_predict_prints_the_output_path_last_and_nothing_else(tmp_path, dense_checkpoint):
    out = tmp_path / "pred.csv"
    proc = run_entry(
        "predict.py",
        f"ckpt_path={dense_checkpoint}",
        f"input={ROOT}/data/examples/spectra_z8.npz",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert proc.stdout.strip().splitlines() == [str(out)]
    assert proc.stderr == ""
