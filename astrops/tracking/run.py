"""One run lifecycle for every kind of run — a network, an ensemble, a baseline — like
lightning-hydra-template's ``task_wrapper``: open (or resume) the MLflow run, record its config,
git commit, tags and data lineage once, close it FINISHED, or FAILED / KILLED with the error and
the command that resumes it. SIGTERM (a scheduler's or a user's kill) takes the same path as
Ctrl-C.

Lightning logs the metrics of a fitting run; MLflow's client logs figures, files and everything
computed outside Lightning (timings, calibration factors, ensembles, baselines) through
:class:`TrackedRun`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from astrops.tracking.backend import default_tracking_uri, open_on_runs, redact
from astrops.tracking.summary import MAX_METRIC_KEYS, is_per_epoch, is_summary, run_params

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger, MLFlowLogger

log = logging.getLogger(__name__)


class RunTerminated(KeyboardInterrupt):
    """SIGTERM turned into Lightning's graceful-interrupt path (a KeyboardInterrupt): the run is
    closed as KILLED and a training run's last.ckpt stays resumable."""


@dataclass
class TrackedRun:
    """The open MLflow run of one job: what the job logs besides Lightning's metrics goes through
    it."""

    logger: MLFlowLogger
    tracking_uri: str
    experiment: str

    @property
    def run_id(self) -> str:
        return self.logger.run_id

    @property
    def client(self):
        return self.logger.experiment

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tag(self.run_id, key, str(value))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Metrics computed outside Lightning's logging (timings, calibration, subsets) in one
        batch."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_results(self, results: dict[str, float], step: int = 0) -> None:
        """A run's final results, once: the summary keys as metrics at ``step`` (the final step),
        every key in the ``metrics.json`` artifact (:mod:`astrops.tracking.summary`). A run without
        epochs (a baseline) logs its loss and validation R² here too, so it sits beside the
        networks' curves."""
        summary = {k: v for k, v in results.items() if is_summary(k) or is_per_epoch(k)}
        # the compare page stays legible: say so rather than drown it
        if len(summary) > MAX_METRIC_KEYS:
            log.warning(
                "%d summary metric keys (more than %d): see astrops.tracking.summary",
                len(summary),
                MAX_METRIC_KEYS,
            )
        self.log_metrics(summary, step)
        self.log_dict(dict(sorted(results.items())), "metrics.json")

    def log_figures(self, figures: dict[str, Any]) -> None:
        import matplotlib.pyplot as plt

        for name, fig in figures.items():
            self.client.log_figure(self.run_id, fig, f"figures/{name}.png")
            plt.close(fig)

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def where(self) -> str:
        """How to see this run: the UI command and a link that opens MLflow 3's UI on runs (not
        GenAI)."""
        exp_id = self.logger.experiment_id
        link = f"#/experiments/{exp_id}/runs/{self.run_id}?workflowType=machine_learning"
        if self.tracking_uri.startswith(("http://", "https://")):
            server = redact(self.tracking_uri).rstrip("/")
            return f"MLflow run {self.run_id} in experiment '{self.experiment}': {server}/{link}"
        return (
            f"MLflow run {self.run_id} in experiment '{self.experiment}': "
            f"mlflow ui --backend-store-uri {redact(self.tracking_uri)}, then open "
            f"http://127.0.0.1:5000/{link}"
        )


def tracked(logger: MLFlowLogger | None, cfg: DictConfig) -> TrackedRun | None:
    """The run of ``logger`` (None stays None: no MLflow logger configured, or not rank 0)."""
    if logger is None:
        return None
    return TrackedRun(
        logger,
        cfg.logger.mlflow.get("tracking_uri") or default_tracking_uri(),
        str(cfg.experiment_name),
    )


def run_tags(cfg: DictConfig, lineage: dict[str, Any], **extra: Any) -> dict[str, str]:
    """The tags every run carries: what was trained (``model``, ``task``: the config choices), the
    data lineage, the sweep it belongs to, the user's ``tags``; plus ``extra`` (ensemble size,
    baseline, ...)."""
    tags = {
        "model": cfg.get("model_name", ""),
        "task": cfg.get("task_config", ""),
        **lineage,
        **sweep_tags(),
        **extra,
        **(cfg.get("tags") or {}),
    }
    return {k: str(v) for k, v in tags.items()}


@contextmanager
def run_lifecycle(
    run: TrackedRun | None,
    cfg: DictConfig,
    tags: dict[str, str],
    resume_hint: Callable[[], str] = lambda: "",
) -> Iterator[TrackedRun | None]:
    """Open ``run`` (config, git commit, tags), yield it, and close it: FINISHED on success, else
    FAILED (an error) or KILLED (SIGTERM, Ctrl-C) with the error and ``resume_hint()`` in its
    ``error`` tag.

    ``run`` None (no MLflow logger, or a DDP rank other than 0) still gets the SIGTERM handling. A
    run that Lightning already closed as FINISHED keeps that status: it finished before the error.
    """
    previous = _sigterm_as_interrupt()
    try:
        if run is not None:
            open_on_runs(run.client, run.logger.experiment_id)
            log_run_start(run, cfg, tags)
        yield run
        if run is not None:
            if run.status() != "FINISHED":
                run.client.set_terminated(run.run_id, "FINISHED")
            print(run.where())
    except BaseException as exc:
        # the bookkeeping must never replace the error it records (a locked database, a server
        # gone)
        try:
            if run is not None and run.status() != "FINISHED":
                interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
                hint = resume_hint() if interrupted else ""
                msg = (
                    "interrupted (SIGTERM or Ctrl-C)"
                    if interrupted
                    else f"{type(exc).__name__}: {exc}"
                )
                run.set_tag("error", (msg + (f"; {hint}" if hint else ""))[:5000])
                run.client.set_terminated(run.run_id, "KILLED" if interrupted else "FAILED")
        except Exception as bookkeeping:  # noqa: BLE001
            log.warning("could not record the run's end in MLflow (%s)", bookkeeping)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt():
    """Make SIGTERM interrupt like Ctrl-C (main thread only; returns the previous handler)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise RunTerminated(f"received signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def mlflow_of(loggers: list[Logger]) -> MLFlowLogger | None:
    from lightning.pytorch.loggers import MLFlowLogger

    return next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
        tags.update(
            sweep_id=os.environ.get("ASTROPS_SWEEP_ID", out.parent.name),
            sweep_dir=str(out.parent),
            job_num=str(hc.job.num),
        )
    return tags


def log_run_start(run: TrackedRun, cfg: DictConfig, tags: dict[str, Any]) -> None:
    """The compared params, the whole config as ``config.yaml``, git commit and tags: once per
    run."""
    container = OmegaConf.to_container(cfg, resolve=True)
    params = {k: redact(v[:6000]) for k, v in run_params(cfg).items()}
    existing = run.client.get_run(run.run_id).data.params
    new = {k: v for k, v in params.items() if k not in existing}  # a resumed run keeps its params
    if new:
        run.logger.log_hyperparams(new)
    run.log_dict(_redacted(container), "config.yaml")
    for k, v in {**tags, "git_commit": git_commit()}.items():
        run.set_tag(k, v)


def _redacted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _redacted(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redacted(v) for v in obj]
    return redact(obj) if isinstance(obj, str) else obj
