"""scripts/gpu_check.py (`make gpu-check`) tested without a GPU: the CPU against the CPU with tiny
settings (the real data, model builder and training function), its refusal without CUDA, and that a
real difference in the outputs or in R² makes it fail."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402

PARAMS = {"HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"}
TINY_RUN = ["--accelerator", "cpu", "--epochs", "2", "--limit-train-batches", "3"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )


def test_cpu_against_cpu_passes_and_reports(tmp_path):
    out = tmp_path / "report.json"
    proc = _run(*TINY_RUN, "--models", "dense", "--json", str(out))
    assert proc.returncode == gpu_check.EXIT_OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu-check: PASS" in proc.stdout
    assert "CUDA untested" in proc.stdout  # the header says plainly what was compared
    report = json.loads(out.read_text())
    assert report["rel_tol"] == 1e-4 and report["r2_tol"] == 0.01 and report["epochs"] == 2
    (dense,) = report["models"]
    assert dense["model"] == "dense" and dense["failures"] == []
    assert dense["n_spectra"] > 100  # the reference data's test split went through both copies
    # the same weights on the same device: identical outputs, well inside the tolerance
    assert dense["rel_diff_init"] == 0.0 and dense["rel_diff_trained"] == 0.0
    sides = dense["sides"]
    assert set(sides) == {"cpu", "accelerator"}
    for side in sides.values():
        assert side["epochs"] == 2
        assert side["samples"] == 2 * 3 * 32  # epochs x limit_train_batches x data.batch_size
        assert math.isfinite(side["samples_per_s"]) and side["samples_per_s"] > 0
        assert set(side["r2"]) == PARAMS and all(math.isfinite(v) for v in side["r2"].values())
    # the same seed on the CPU twice: the training is deterministic, R² agree exactly
    assert set(dense["r2_diff"]) == PARAMS and all(d == 0.0 for d in dense["r2_diff"].values())
    # the printed table carries the numbers
    cpu_rate = f"{sides['cpu']['samples_per_s']:.0f}"
    assert any(
        line.startswith("| dense | cpu |") and cpu_rate in line
        for line in proc.stdout.splitlines()
    )


def test_without_cuda_says_cuda_is_untested():
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on a GPU machine too
    proc = _run("--models", "dense", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == gpu_check.EXIT_NO_CUDA == 3, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "no CUDA device: CUDA is untested"
    assert "PASS" not in proc.stdout


def test_bad_arguments_exit_2():
    proc = _run("--models", "transformer", "--accelerator", "cpu")
    assert proc.returncode == gpu_check.EXIT_USAGE == 2
    assert "--models" in proc.stderr


def test_a_real_difference_fails(monkeypatch, capsys, tmp_path):
    """The accelerator's copy of the weights nudged by 1e-3, and its training run from another
    seed: both checks must fail, for the CNN (the other model's code path), and the exit status
    must be 1."""

    def nudged(model, device):
        copy = gpu_check.to_device(model, device)
        with torch.no_grad():
            for p in copy.parameters():
                p.add_(1e-3)
        return copy

    real_train_side = gpu_check.train_side

    def other_seed(model, accelerator, out_dir, args):
        if out_dir.name.endswith("-accelerator"):
            args = type(args)(**{**vars(args), "seed": 999})
        return real_train_side(model, accelerator, out_dir, args)

    monkeypatch.setattr(gpu_check, "to_accelerator", nudged)
    monkeypatch.setattr(gpu_check, "train_side", other_seed)
    out = tmp_path / "report.json"
    rc = gpu_check.main([*TINY_RUN, "--models", "cnn", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == gpu_check.EXIT_FAILED
    assert "gpu-check: FAIL" in printed
    (cnn,) = json.loads(out.read_text())["models"]
    assert cnn["rel_diff_init"] > 1e-4 and cnn["rel_diff_trained"] > 1e-4
    assert max(cnn["r2_diff"].values()) > 0.01
    assert any("same initial weights differ" in f for f in cnn["failures"])
    assert any("same trained weights differ" in f for f in cnn["failures"])
    assert any("|ΔR²|" in f for f in cnn["failures"])


def test_verdict_rejects_nan_and_unequal_epochs():
    side = gpu_check.SideResult("cpu", 2, 64, 1.0, 64.0, {"A": 0.5})
    rep = gpu_check.ModelReport(
        "dense",
        rel_diff_init=math.nan,
        rel_diff_trained=0.0,
        sides={
            "cpu": side,
            "accelerator": gpu_check.SideResult("cuda", 1, 32, 0.0, math.nan, {"A": 0.5}),
        },
        r2_diff={"A": math.nan},
    )
    failures = gpu_check.verdict(rep, 1e-4, 0.01)
    assert any("initial weights" in f for f in failures)
    assert any("|ΔR²| A" in f for f in failures)
    assert any("samples/s on cuda" in f for f in failures)
    assert any("trained 1 epochs" in f for f in failures)
    assert not any("trained weights" in f for f in failures)
