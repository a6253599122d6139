"""Hydra callbacks that make multiruns safe and visible in MLflow.

* Before a sweep: create the MLflow store and experiment once, so parallel jobs (joblib, submitit)
  do not race on sqlite schema migrations ("duplicate column", "database is locked").
* After an Optuna sweep: log ``optimization_results.yaml`` (best parameters and value) to MLflow as
  a summary run tagged with the sweep id.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from astrops.tracking.backend import analysis_experiment, default_tracking_uri, prepare_experiment

log = logging.getLogger(__name__)


def _mlflow_settings(config: DictConfig) -> tuple[str, str, str | None] | None:
    lg = (config.get("logger") or {}).get("mlflow")
    if lg is None:
        return None
    return (
        str(lg.get("tracking_uri") or default_tracking_uri()),
        str(lg.experiment_name),
        lg.get("artifact_root"),
    )


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # a unique id per sweep, inherited by the job processes (basic, joblib and submitit
        # launchers)
        os.environ["ASTROPS_SWEEP_ID"] = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        settings = _mlflow_settings(config)
        if settings:
            prepare_experiment(*settings)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        settings = _mlflow_settings(config)
        results = Path(str(config.hydra.sweep.dir)) / "optimization_results.yaml"
        if not settings or not results.exists():
            return
        import mlflow

        tracking_uri, experiment_name, artifact_root = settings
        client = mlflow.MlflowClient(tracking_uri)
        exp_id = prepare_experiment(
            tracking_uri, analysis_experiment(experiment_name), artifact_root
        )
        best = OmegaConf.to_container(OmegaConf.load(results), resolve=True)
        sweep_id = os.environ.get("ASTROPS_SWEEP_ID", results.parent.name)
        run = client.create_run(
            exp_id,
            run_name=f"optuna-best-{sweep_id}",
            tags={
                "sweep_id": sweep_id,
                "sweep_dir": str(results.parent),
                "kind": "optuna_summary",
            },
        )
        for k, v in (best.get("best_params") or {}).items():
            client.log_param(run.info.run_id, k, v)
        if isinstance(best.get("best_value"), int | float):
            client.log_metric(run.info.run_id, "best_value", float(best["best_value"]))
        client.log_artifact(run.info.run_id, str(results))
        client.set_terminated(run.info.run_id)
        log.info(
            "best parameters %s (value %s) logged to MLflow run %s",
            best.get("best_params"),
            best.get("best_value"),
            run.info.run_id,
        )
