"""Where runs go: tracking URIs (one default), the MLflow store and experiments, fail-fast checks.

The default store is an absolute sqlite file under the project (``tracking/mlflow.db`` beside
``tracking/artifacts``), so every run and sweep from any working directory lands in one place;
``MLFLOW_TRACKING_URI`` (or ``logger.mlflow.tracking_uri``) points at a server instead.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from astrops.errors import TrackingError

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger


log = logging.getLogger(__name__)


def project_root() -> Path:
    """``ASTROPS_ROOT`` (set by the entry scripts) or the repository this package lives in."""
    return Path(os.environ.get("ASTROPS_ROOT", Path(__file__).resolve().parents[2]))


def default_tracking_uri() -> str:
    """The one default: ``$MLFLOW_TRACKING_URI``, else the project's sqlite database (absolute
    path)."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root() / 'tracking' / 'mlflow.db'}"
    )


def default_artifact_root() -> str:
    return str(project_root() / "tracking" / "artifacts")


def analysis_experiment(experiment_name: str) -> str:
    """Where after-the-fact runs (comparisons, data plots, sweep summaries) go: beside, not among,
    the training runs they describe, so the training experiment lists training runs only."""
    return f"{experiment_name}-analysis"


def artifact_location(
    tracking_uri: str, experiment_name: str, artifact_root: str | None
) -> str | None:
    """Where a new experiment's artifacts go: ``artifact_root`` if given, else beside the local
    sqlite store (``<db folder>/artifacts``: the project's ``tracking/artifacts`` for the default
    store); a server chooses its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    beside = Path(tracking_uri[len("sqlite:///") :]).parent / "artifacts"
    return str(Path(artifact_root or beside).absolute() / experiment_name)


def prepare_experiment(
    tracking_uri: str, experiment_name: str, artifact_root: str | None = None
) -> str:
    """Create (or find) the experiment; the first call on a new sqlite file runs MLflow's
    migrations."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is not None:
        open_on_runs(client, exp.experiment_id)
        return exp.experiment_id
    experiment_id = client.create_experiment(
        experiment_name,
        artifact_location=artifact_location(tracking_uri, experiment_name, artifact_root),
    )
    open_on_runs(client, experiment_id)
    return experiment_id


def open_on_runs(client, experiment_id: str) -> None:
    """Mark the experiment as model training (not GenAI) for MLflow's UI, idempotently.

    Sets MLflow's own experiment tag ``mlflow.experimentKind = custom_model_development`` (what the
    UI's kind selector writes). UIs that read it open the experiment on its runs table. MLflow
    3.17's UI does not read it: there ``shouldEnableWorkflowBasedNavigation()`` is on and the view
    comes from the browser's *workflow type* alone, i.e. the URL parameter
    ``?workflowType=machine_learning``, else the browser's localStorage ``mlflow.workflowType_v1``
    (set by clicking "Model training"), else GenAI, which opens on the GenAI overview. So links to
    the UI must carry ``?workflowType=machine_learning``:
    ``<server>/#/experiments/<experiment_id>?workflowType=machine_learning``.
    """
    key, value = "mlflow.experimentKind", "custom_model_development"
    if client.get_experiment(experiment_id).tags.get(key) != value:
        client.set_experiment_tag(experiment_id, key, value)


def redact(uri: str) -> str:
    """Hide credentials in URIs (``scheme://user:password@host`` → ``scheme://user:***@host``)."""
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", uri)


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when an HTTP tracking server does not answer, instead of losing the run later."""
    url = uri.rstrip("/") + "/health"
    try:
        urllib.request.urlopen(url, timeout=timeout).read()  # noqa: S310 (the user's own tracking URI)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} is unreachable ({exc}): start it, fix "
            "MLFLOW_TRACKING_URI, or train with logger=csv"
        ) from exc


def mlflow_logger(
    experiment_name: str,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    tags: dict | None = None,
    check_server: bool = True,
) -> MLFlowLogger:
    """An MLFlowLogger whose local store is an absolute sqlite file with artifacts beside it; it
    passes on the per-epoch curves only (the run's summary is logged once at the end:
    :mod:`astrops.tracking.summary`).

    ``tracking_uri``/``artifact_root`` null: :func:`default_tracking_uri` /
    :func:`default_artifact_root`. ``artifact_root`` applies to local sqlite stores only (a server
    chooses its own artifact store).
    """
    from astrops.tracking.lightning_logger import CurvesMLFlowLogger

    tracking_uri = tracking_uri or default_tracking_uri()
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    elif tracking_uri.startswith(("http://", "https://")) and check_server:
        _check_reachable(tracking_uri)
    elif tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise TrackingError(
            f"tracking URI {redact(tracking_uri)} is a file store, which MLflow 3 refuses: "
            "use sqlite:////abs/path/mlflow.db or an http(s) server"
        )
    # found, not "not found. Creating it"
    prepare_experiment(tracking_uri, experiment_name, artifact_root)
    return CurvesMLFlowLogger(
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        run_name=run_name,
        run_id=run_id,
        tags=tags,
        artifact_location=artifact_location(tracking_uri, experiment_name, artifact_root),
    )


def existing_experiment(tracking_uri: str, experiment_name: str, fix: str):
    """(client, experiment) of an experiment that must already exist, for commands that only read
    runs.

    A ``sqlite:///`` path that does not exist is refused before MLflow would create an empty
    database there.
    """
    import mlflow

    if (
        tracking_uri.startswith("sqlite:///")
        and not Path(tracking_uri[len("sqlite:///") :]).is_file()
    ):
        raise TrackingError(
            f"no MLflow database at {redact(tracking_uri)}: give the --tracking-uri the runs "
            "were logged to"
        )
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(
            f"no MLflow experiment {experiment_name!r} at {redact(tracking_uri)} (have: {names}): "
            f"{fix}"
        )
    return client, exp


def check_resumable(tracking_uri: str | None, run_id: str, ckpt_path: str) -> None:
    """Refuse, before anything is created, to resume into a run the tracking store does not hold
    (a checkpoint copied from another machine, a reset database)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    tracking_uri = tracking_uri or default_tracking_uri()
    fix = (
        "resume with the tracking store it was trained with (logger.mlflow.tracking_uri=...), "
        "or train with logger=csv"
    )
    if (
        tracking_uri.startswith("sqlite:///")
        and not Path(tracking_uri[len("sqlite:///") :]).is_file()
    ):
        raise TrackingError(
            f"ckpt_path={ckpt_path} belongs to MLflow run {run_id}, but {redact(tracking_uri)} "
            f"does not exist: {fix}"
        )
    try:
        MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        raise TrackingError(
            f"ckpt_path={ckpt_path} belongs to MLflow run {run_id}, which {redact(tracking_uri)} "
            f"does not hold: {fix}"
        ) from None
