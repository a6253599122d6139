"""Shared fixtures: small real 21cmFAST boxes, subprocess helpers for the Hydra entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ASTROPS_ROOT", str(ROOT))
# `make test` runs two pytest workers on two cores: one torch/OpenMP thread each (and in every
# process they start), or spinning threads of one worker stall the other
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# A small box so tests are quick: HII_DIM=20 over 50 Mpc (R_BUBBLE_MAX must stay <= BOX_LEN/3).
SMALL = [
    "simulation.simulator.user_params.HII_DIM=20",
    "simulation.simulator.user_params.BOX_LEN=50",
    "simulation.design.priors.R_BUBBLE_MAX=[5.0,15.0]",
    "progress=false",
]


def run_entry(
    script: str, *overrides: str, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    """Run ``python <script> overrides...`` from a neutral working directory, capturing output."""
    cwd = kw.pop("cwd", None) or os.environ.get("PYTEST_TMPDIR", "/tmp")
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def popen_entry(script: str, *overrides: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.fixture(scope="session", autouse=True)
def _logs_in_tmp(tmp_path_factory) -> None:
    """Hydra's run folders of every entry point a test starts (and of configs composed here) go
    under the session's tmp dir, never into the repository's logs/ (paths.log_dir reads
    $ASTROPS_LOG_DIR)."""
    os.environ["ASTROPS_LOG_DIR"] = str(tmp_path_factory.getbasetemp() / "logs")


@pytest.fixture
def small_sim_overrides(tmp_path: Path) -> list[str]:
    """Overrides for simulate.py writing a small-box dataset into a private store."""
    return [*SMALL, f"paths.store_dir={tmp_path / 'store'}", f"hydra.run.dir={tmp_path / 'hydra'}"]


def compose_cfg(config_name: str, overrides: list[str]):
    """Compose a config as the entry point would (Hydra resolvers such as ${hydra:...} work)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    from omegaconf import open_dict

    with open_dict(cfg):  # the task function never sees the hydra node
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """A real MLflow sqlite store with its schema migrated and nothing in it: creating one costs
    ~2 s of MLflow's migrations, so tests that only need a fresh store start from a copy."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def train_cfg(tmp_path: Path, empty_mlflow_db: Path):
    """Compose train.yaml writing everything (MLflow db, artifacts, checkpoints) under tmp_path;
    the MLflow store starts as a copy of an empty, migrated one."""
    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")

    def make(*overrides: str):
        return compose_cfg(
            "train",
            [
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                f"logger.mlflow.artifact_root={tmp_path}/artifacts",
                "callbacks.progress_bar=null",
                *overrides,
            ],
        )

    return make


@pytest.fixture(scope="session")
def dense_checkpoint(tmp_path_factory) -> str:
    """One quick dense regression model (reference data, z = 8, one short epoch, no MLflow), shared
    by the tests that only need a model to load, tamper with or apply."""
    from astrops.training import train

    tmp = tmp_path_factory.mktemp("dense")
    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/run",
            "logger=none",
            "callbacks.progress_bar=null",
            "saliency=false",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        ],
    )
    _, best = train(cfg)
    return best


def train_reported(cfg, dm=None):
    """Training as ``train.py`` runs it: the run's report (analysis) handed in as the entry
    point does."""
    from astrops.analysis.run_report import report_run
    from astrops.training import train

    return train(cfg, dm, reporter=report_run)


def train_ensemble_reported(cfg):
    """An ensemble as ``train.py`` runs it, with the run's report."""
    from astrops.analysis.run_report import report_run
    from astrops.training import train_ensemble

    return train_ensemble(cfg, reporter=report_run)


# script -> (its config, its entry function in astrops.entry.commands)
ENTRY_FUNCTIONS = {
    "train.py": ("train", "run_train"),
    "predict.py": ("predict", "run_predict"),
    "simulate.py": ("simulate", "run_simulate"),
    "baselines.py": ("baselines", "run_baselines"),
}


def run_in_process(script: str, *overrides: str, capfd) -> subprocess.CompletedProcess:
    """What ``python <script> overrides...`` does for a refusal, without a new interpreter:
    compose the script's config and call its entry function under the one entry policy (rules,
    one-line refusal, exit status). Returns its exit status and output like :func:`run_entry`.
    Used for tests that only check a refusal; each entry point keeps one real subprocess test of
    its exit code."""
    from astrops.entry import commands

    config, function = ENTRY_FUNCTIONS[script]
    cfg = compose_cfg(config, [o for o in overrides if not o.startswith("hydra.")])
    capfd.readouterr()
    try:
        getattr(commands, function)(cfg)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capfd.readouterr()
    return subprocess.CompletedProcess([script, *overrides], code, out.out, out.err)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory, worker_id) -> tuple[str, str]:
    """train.py task=emulator (through the entry point's dispatch): z = 8, 30 epochs; its last line
    is the file. Trained once per run: xdist workers share it through their run's directory (the
    pytest-xdist recipe: a file lock, the first worker trains)."""
    from filelock import FileLock

    if worker_id == "master":
        return _train_emulator(tmp_path_factory.mktemp("emu"))
    root = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    with FileLock(str(root / "emulator.lock")):
        done = root / "emulator.json"
        if not done.is_file():
            (root / "emu").mkdir()
            done.write_text(json.dumps(_train_emulator(root / "emu")))
        return tuple(json.loads(done.read_text()))


def _train_emulator(tmp: Path) -> tuple[str, str]:
    proc = run_entry(
        "train.py",
        "experiment=emulator",
        "data.redshifts=[8.0]",
        "data.extra_train_store_dir=null",  # the reference store alone: a quick test emulator
        "trainer.max_epochs=30",
        f"paths.output_dir={tmp}/run",
        f"hydra.run.dir={tmp}/hydra",
        f"logger.mlflow.tracking_uri=sqlite:///{tmp}/m.db",
        f"logger.mlflow.artifact_root={tmp}/art",
        "callbacks.progress_bar=null",
    )
    path = proc.stdout.strip().splitlines()[-1]
    assert path.endswith("emulator.pt") and Path(path).is_file()
    return path, f"sqlite:///{tmp}/m.db"
