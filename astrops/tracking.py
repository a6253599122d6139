"""MLflow plumbing around Lightning's MLFlowLogger: URIs, fail-fast checks, run metadata, artifacts.

Lightning logs metrics; MLflow's client logs figures and files. This module only decides *where*
(absolute sqlite path by default, ``MLFLOW_TRACKING_URI`` for a server) and *what else* a run
carries: config, git commit, tags and data lineage.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used (one line, names the fix)."""


def redact(uri: str) -> str:
    """Hide credentials in URIs (``scheme://user:password@host`` → ``scheme://user:***@host``)."""
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", uri)


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when an HTTP tracking server does not answer, instead of losing the run later."""
    url = uri.rstrip("/") + "/health"
    try:
        urllib.request.urlopen(url, timeout=timeout).read()  # noqa: S310 (the user's own tracking URI)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(f"MLflow tracking server {redact(uri)} is unreachable ({exc}): start it, fix "
                            "MLFLOW_TRACKING_URI, or train with logger=csv") from exc


def mlflow_logger(experiment_name: str, tracking_uri: str, artifact_root: str | None = None,
                  run_name: str | None = None, run_id: str | None = None, tags: dict | None = None,
                  check_server: bool = True) -> MLFlowLogger:
    """An MLFlowLogger whose local store is an absolute sqlite file with artifacts beside it.

    ``artifact_root`` applies to local sqlite stores only (a server chooses its own artifact store).
    """
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        if artifact_root:
            artifact_location = str(Path(artifact_root).absolute() / experiment_name)
    elif tracking_uri.startswith(("http://", "https://")) and check_server:
        _check_reachable(tracking_uri)
    elif tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise TrackingError(f"tracking URI {redact(tracking_uri)} is a file store, which MLflow 3 refuses: "
                            "use sqlite:////abs/path/mlflow.db or an http(s) server")
    return MLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_name=run_name,
                        run_id=run_id, tags=tags, artifact_location=artifact_location)


def check_resumable(tracking_uri: str, run_id: str, ckpt_path: str) -> None:
    """Refuse, before anything is created, to resume into a run the tracking store does not hold
    (a checkpoint copied from another machine, a reset database)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    fix = ("resume with the tracking store it was trained with (logger.mlflow.tracking_uri=...), "
           "or train with logger=csv")
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise TrackingError(f"ckpt_path={ckpt_path} belongs to MLflow run {run_id}, but {redact(tracking_uri)} "
                            f"does not exist: {fix}")
    try:
        MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        raise TrackingError(f"ckpt_path={ckpt_path} belongs to MLflow run {run_id}, which {redact(tracking_uri)} "
                            f"does not hold: {fix}") from None


def mlflow_of(loggers: list[Logger]) -> MLFlowLogger | None:
    return next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def sweep_tags() -> dict[str, str]:
    """The command-line overrides of this job and, in a multirun, the sweep it belongs to."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {"overrides": " ".join(hc.overrides.task) or "(none)"}
    if hc.mode == RunMode.MULTIRUN:
        out = Path(hc.runtime.output_dir)
        tags.update(sweep_id=os.environ.get("ASTROPS_SWEEP_ID", out.parent.name), sweep_dir=str(out.parent),
                    job_num=str(hc.job.num))
    return tags


def log_run_start(logger: MLFlowLogger, cfg: DictConfig, tags: dict[str, Any]) -> None:
    """Config (flattened params + config.yaml), git commit and tags: once per run."""
    container = OmegaConf.to_container(cfg, resolve=True)
    params = {k: str(v)[:6000] for k, v in flatten(container).items() if not k.startswith("hydra/")}
    params = {k: redact(v) for k, v in params.items()}
    client, run_id = logger.experiment, logger.run_id
    existing = client.get_run(run_id).data.params
    new = {k: v for k, v in params.items() if k not in existing}  # a resumed run keeps its params
    if new:
        logger.log_hyperparams(new)
    client.log_dict(run_id, _redacted(container), "config.yaml")
    for k, v in {**tags, "git_commit": git_commit()}.items():
        client.set_tag(run_id, k, str(v))


def _redacted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _redacted(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redacted(v) for v in obj]
    return redact(obj) if isinstance(obj, str) else obj


def log_figures(logger: MLFlowLogger, figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for name, fig in figures.items():
        logger.experiment.log_figure(logger.run_id, fig, f"figures/{name}.png")
        plt.close(fig)


def log_metrics(logger: MLFlowLogger, metrics: dict[str, float], step: int = 0) -> None:
    """Metrics computed outside Lightning's logging (timings, calibration, subsets) in one batch."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    logger.experiment.log_batch(logger.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_file(logger: MLFlowLogger, path: str | Path, artifact_dir: str | None = None) -> None:
    logger.experiment.log_artifact(logger.run_id, str(path), artifact_dir)
