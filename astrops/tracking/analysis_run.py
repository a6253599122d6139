"""One finished MLflow run of an after-the-fact analysis (calibration suite, reference comparison):
its metrics and every file it wrote, in ``<experiment>-analysis`` beside the training runs it
describes."""

from __future__ import annotations

import time
from pathlib import Path


def log_analysis_run(
    metrics: dict[str, float],
    out_dir: Path,
    experiment: str,
    tracking_uri: str,
    tags: dict[str, str],
    run_name: str,
) -> str:
    """Create, fill and close the run (PNGs under ``figures/``); returns its id."""
    import mlflow
    from mlflow.entities import Metric

    from astrops.tracking.backend import analysis_experiment, prepare_experiment

    client = mlflow.MlflowClient(tracking_uri)
    exp_id = prepare_experiment(tracking_uri, analysis_experiment(experiment))
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
    )
    for path in sorted(Path(out_dir).iterdir()):
        if path.is_file():
            client.log_artifact(
                run.info.run_id, str(path), "figures" if path.suffix == ".png" else None
            )
    client.set_terminated(run.info.run_id)
    return run.info.run_id
