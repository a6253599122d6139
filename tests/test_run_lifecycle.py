"""One MLflow run lifecycle for every kind of run (astrops.tracking.run_lifecycle), on a real
sqlite store."""

from __future__ import annotations

import os
import signal

import mlflow
import pytest
from conftest import compose_cfg

from astrops import tracking
from astrops.tracking.run import RunTerminated


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating one costs seconds), and a train config pointing at
    it."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    uri = f"sqlite:///{tmp}/m.db"
    cfg = compose_cfg(
        "train",
        [
            f"logger.mlflow.tracking_uri={uri}",
            f"paths.output_dir={tmp}/run",
            "+tags.campaign=lifecycle",
        ],
    )
    tracking.prepare_experiment(uri, "astrops", str(tmp / "a"))
    return uri, cfg


@pytest.fixture
def open_run(store):
    """A new TrackedRun in the module's store, the config it belongs to, and a client."""
    uri, cfg = store
    run = tracking.tracked(tracking.mlflow_logger("astrops", uri, run_name="lifecycle"), cfg)
    return run, cfg, mlflow.MlflowClient(uri)


def test_success_records_config_tags_and_finishes(open_run, capsys):
    run, cfg, client = open_run
    # an experiment made elsewhere
    client.delete_experiment_tag(run.logger.experiment_id, "mlflow.experimentKind")
    with tracking.run_lifecycle(
        run, cfg, tracking.run_tags(cfg, {"dataset_hash": "abc"}, world_size=1)
    ) as r:
        assert r is run and client.get_run(run.run_id).info.status == "RUNNING"
        r.log_metrics({"test/R2/overall": 0.5})
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    tags = got.data.tags
    assert (
        tags["model"] == "dense" and tags["task"] == "regression" and tags["dataset_hash"] == "abc"
    )
    assert tags["campaign"] == "lifecycle" and tags["world_size"] == "1" and tags["git_commit"]
    assert got.data.params["seed"] == "12345" and got.data.metrics["test/R2/overall"] == 0.5
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.run_id)}
    out = capsys.readouterr().out
    assert f"MLflow run {run.run_id} in experiment 'astrops'" in out
    # MLflow 3's UI opens on runs (not its GenAI overview) through the link's workflowType
    assert (
        f"/#/experiments/{got.info.experiment_id}/runs/{run.run_id}?workflowType=machine_learning"
        in out
    )
    assert (
        client.get_experiment(got.info.experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )


def test_error_marks_failed_with_the_error_and_no_resume_hint(open_run):
    run, cfg, client = open_run
    with (
        pytest.raises(ValueError, match="boom"),
        tracking.run_lifecycle(run, cfg, {}, lambda: "resume with X"),
    ):
        raise ValueError("boom")
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED" and got.data.tags["error"] == "ValueError: boom"


def test_sigterm_is_an_interrupt_marked_killed_with_the_resume_hint(open_run):
    run, cfg, client = open_run
    before = signal.getsignal(signal.SIGTERM)
    hint = "resume with ckpt_path=/x/last.ckpt"
    with pytest.raises(RunTerminated), tracking.run_lifecycle(run, cfg, {}, lambda: hint):
        os.kill(os.getpid(), signal.SIGTERM)
    got = client.get_run(run.run_id)
    assert got.info.status == "KILLED"
    assert (
        got.data.tags["error"]
        == "interrupted (SIGTERM or Ctrl-C); resume with ckpt_path=/x/last.ckpt"
    )
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_run_already_finished_keeps_its_status(open_run):
    run, cfg, client = open_run
    with pytest.raises(RuntimeError), tracking.run_lifecycle(run, cfg, {}):
        client.set_terminated(run.run_id, "FINISHED")  # what Lightning does at the end of fit/test
        raise RuntimeError("after the end")
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_without_mlflow_the_lifecycle_still_handles_sigterm(open_run):
    _, cfg, _ = open_run
    with pytest.raises(RunTerminated), tracking.run_lifecycle(None, cfg, {}) as r:
        assert r is None
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_failing_member_fails_the_ensemble_run_too(tmp_path, train_cfg):
    """Ensembles share the lifecycle: a member's error closes the member's run and the ensemble's
    as FAILED."""
    from conftest import train_ensemble_reported as train_ensemble

    cfg = train_cfg(
        "ensemble.members=2", "trainer.max_epochs=1", "model.optimizer.lr=-1", "saliency=false"
    )
    with pytest.raises(ValueError, match="learning rate"):
        train_ensemble(cfg)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("astrops").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp])}
    assert set(runs) == {"dense-regression-ensemble2", "dense-regression-member0"}, set(runs)
    for r in runs.values():
        assert r.info.status == "FAILED" and "learning rate" in r.data.tags["error"]
    parent = runs["dense-regression-ensemble2"]
    assert runs["dense-regression-member0"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["ensemble_members"] == "2"
