"""MLflow's real UI as a new user meets it: a real ``mlflow ui`` over the seed's four runs (dense
and cnn × regression and classification, trained through ``astrops.training.train``), driven in
headless Debian chromium by Playwright. The browser code is scripts/mlflow_screenshots.py (``make
screenshots`` runs the same tour to refresh docs/figures/); here it writes its screenshots under
tmp, or to ``$ASTROPS_SCREENSHOTS_DIR`` when set.

chromium missing is an error, not a skip: ``make test`` installs it (scripts/sysdeps.sh).
"""

from __future__ import annotations

import math
import os
import sys
import urllib.parse
from pathlib import Path

import mlflow
import pytest

from astrops.tracking.backend import open_on_runs, prepare_experiment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import mlflow_screenshots as ui  # noqa: E402

SEED_NAMES = {f"{model}-{task}" for model, task in ui.SEED_RUNS}


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    """(what the browser saw, {run name: Run}, tracking URI): one store, one server, one tour per
    module."""
    ui.chromium_path()  # fails loudly before any training
    root = tmp_path_factory.mktemp("mlflow_ui")
    uri = ui.create_store(root)
    with ui.MlflowUI(uri, root / "mlflow-ui.log") as server:
        ui.train_seed_runs(root, quick=True)  # while the server starts
        experiment_id, runs = ui.seed_runs(uri)
        shots = Path(os.environ.get("ASTROPS_SCREENSHOTS_DIR") or root / "screenshots")
        cls = runs["dense-classification"]
        tour = ui.tour(server.ready(), experiment_id, shots, (cls.info.run_id, cls.info.run_name))
    return tour, runs, uri


def _route(url: str) -> str:
    """The SPA route of a UI URL: ``http://h/#/experiments/1/runs?x=y`` ->
    ``/experiments/1/runs``."""
    return urllib.parse.urlsplit(url.split("#", 1)[-1]).path


def test_the_readme_url_lands_on_the_runs_table(seen):
    tour, runs, _ = seen
    assert set(runs) == SEED_NAMES
    assert _route(tour.landing_url).endswith("/runs"), tour.landing_url
    assert sorted(tour.landing_runs) == sorted(SEED_NAMES)
    assert "/overview" not in tour.landing_url
    assert "Token Usage" not in tour.landing_text  # the GenAI overview's charts


def test_one_click_on_model_training_is_remembered_by_the_browser(seen):
    tour, _, _ = seen
    assert _route(tour.plain_url_after_toggle).endswith("/runs"), (
        tour.plain_url_before_toggle,
        tour.plain_url_after_toggle,
    )


def test_compare_view_shows_test_r2_of_the_four_runs(seen):
    tour, runs, _ = seen
    assert _route(tour.compare_url) == "/compare-runs"
    by_id = {r.info.run_id: r for r in runs.values()}
    assert sorted(tour.compare_run_ids) == sorted(by_id)
    keys = sorted({k for r in runs.values() for k in r.data.metrics if k.startswith("test/R2/")})
    assert keys, "the runs logged no test/R2 metric"
    for key in keys:
        assert key in tour.compare_metrics, (
            f"{key} not in the compare view ({sorted(tour.compare_metrics)})"
        )
        cells = dict(zip(tour.compare_run_ids, tour.compare_metrics[key], strict=True))
        for run_id, cell in cells.items():
            logged = by_id[run_id].data.metrics[key]
            shown = float(cell)
            assert math.isclose(shown, logged, abs_tol=1e-3 + 1e-3 * abs(logged)), (
                key,
                by_id[run_id].info.run_name,
                cell,
                logged,
            )


def test_classification_artifacts_show_the_confusion_matrices(seen):
    tour, runs, uri = seen
    run_id = runs["dense-classification"].info.run_id
    assert (
        _route(tour.artifact_url)
        == f"/experiments/{runs['dense-classification'].info.experiment_id}"
        f"/runs/{run_id}/artifacts"
    )
    assert (f"path={ui.CONFUSION}&run_uuid={run_id}", 200) in tour.artifact_responses, (
        tour.artifact_responses
    )
    assert tour.artifact_heading
    local = mlflow.MlflowClient(uri).download_artifacts(run_id, ui.CONFUSION)
    size = ui.png_size(Path(local).read_bytes())
    assert size != (0, 0)
    assert size in tour.artifact_shown_sizes, (size, tour.artifact_shown_sizes)


def test_screenshots_are_written(seen):
    tour, _, _ = seen
    assert [p.name for p in tour.screenshots] == [
        "mlflow_runs.png",
        "mlflow_compare.png",
        "mlflow_confusion.png",
    ]
    for path in tour.screenshots:
        assert ui.png_size(path.read_bytes()) == (ui.VIEWPORT["width"], ui.VIEWPORT["height"]), (
            path
        )


def test_prepare_experiment_marks_new_and_existing_experiments_as_model_training(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    kind = "mlflow.experimentKind"
    new = prepare_experiment(uri, "astrops", str(tmp_path / "artifacts"))
    assert client.get_experiment(new).tags.get(kind) == "custom_model_development"

    old = client.create_experiment(
        "older", artifact_location=str(tmp_path / "artifacts" / "older")
    )
    assert kind not in client.get_experiment(old).tags
    assert prepare_experiment(uri, "older") == old
    assert client.get_experiment(old).tags.get(kind) == "custom_model_development"

    client.set_experiment_tag(old, kind, "genai_development")
    open_on_runs(client, old)
    assert client.get_experiment(old).tags.get(kind) == "custom_model_development"
