"""MLflow tracking: where runs go (:mod:`.backend`), one lifecycle for every run (:mod:`.run`), and
the Hydra callbacks that make sweeps safe (:mod:`.sweeps`)."""

from astrops.errors import TrackingError
from astrops.tracking.backend import (
    analysis_experiment,
    check_resumable,
    default_artifact_root,
    default_tracking_uri,
    existing_experiment,
    mlflow_logger,
    prepare_experiment,
    project_root,
    redact,
)
from astrops.tracking.run import (
    TrackedRun,
    mlflow_of,
    run_lifecycle,
    run_tags,
    sweep_tags,
    tracked,
)

__all__ = [
    "TrackedRun",
    "TrackingError",
    "analysis_experiment",
    "check_resumable",
    "default_artifact_root",
    "default_tracking_uri",
    "existing_experiment",
    "mlflow_logger",
    "mlflow_of",
    "prepare_experiment",
    "project_root",
    "redact",
    "run_lifecycle",
    "run_tags",
    "sweep_tags",
    "tracked",
]
