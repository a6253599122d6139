"""``train_ensemble(cfg)``: K members trained by :func:`astrops.training.train` (one MLflow run
each, nested under the ensemble's run), combined, calibrated on the validation split, tested, saved
as a directory that ``predict.py ckpt_path=`` accepts (Lakshminarayanan et al. 2017).

Members differ only in the training seed (``seed + i``); ``data.split_seed`` is shared, so they see
one split (one prepared data module) and the validation data stay unseen by all of them. How
members combine and calibrate belongs to the task (:class:`astrops.models.ensemble.Ensemble`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from astrops import tracking
from astrops.checkpoints import MANIFEST, save_ensemble
from astrops.data import SpectraDataModule
from astrops.errors import EnsembleConfigError
from astrops.metrics import ParameterMetrics, score
from astrops.models.flow_predict import TEST_SAMPLES, posterior_samples
from astrops.scores import decoded_outputs
from astrops.tracking import TrackedRun
from astrops.training.network import train
from astrops.training.reporting import Reporter, TestReport

log = logging.getLogger(__name__)


def check_ensemble_config(cfg: DictConfig) -> None:
    k = int(cfg.ensemble.members)
    devices = cfg.trainer.get("devices", 1)
    if not (devices in (1, "1") or devices == [0]):
        raise EnsembleConfigError(
            f"ensemble.members={k} with trainer.devices={devices}: members train one after "
            "another on one device; use trainer=default (or train members as separate jobs: "
            "-m seed=1,2,3)"
        )
    if cfg.get("ckpt_path"):
        raise EnsembleConfigError(
            "ckpt_path= with ensemble.members > 1: every member would resume the same checkpoint; "
            "resume the interrupted member alone (ensemble.members=1 seed=<its seed> "
            "ckpt_path=...)"
        )
    if not (cfg.get("callbacks") or {}).get("model_checkpoint") or cfg.trainer.get("fast_dev_run"):
        raise EnsembleConfigError(
            "ensemble.members > 1 needs callbacks.model_checkpoint and no fast_dev_run: "
            "the ensemble is built from the members' best checkpoints"
        )


def _member_cfg(cfg: DictConfig, i: int, out_dir: Path, parent_run: str | None) -> DictConfig:
    m = copy.deepcopy(cfg)
    with open_dict(m):
        m.seed = int(cfg.seed) + i
        m.paths.output_dir = str(out_dir / f"member_{i}")
        m.run_name = f"{cfg.run_name}-member{i}"
        m.ensemble.members = 1
        # the ensemble logs (and registers) one MLflow Model of all members
        m.log_model = m.register = False
        m.tags = {
            **(cfg.get("tags") or {}),
            "ensemble_member": i,
            **({"mlflow.parentRunId": parent_run} if parent_run else {}),
        }
    return m


def train_ensemble(
    cfg: DictConfig, reporter: Reporter | None = None
) -> tuple[dict[str, float], str]:
    """Train ``cfg.ensemble.members`` members and evaluate their combination; returns (metrics,
    directory). ``reporter`` writes the ensemble run's report (the members report nothing of
    their own: their numbers are in the ensemble's ``members_mean/*``)."""
    check_ensemble_config(cfg)
    k, out_dir = int(cfg.ensemble.members), Path(cfg.paths.output_dir)
    dm: SpectraDataModule = instantiate(cfg.data)
    dm.prepare()  # before the ensemble's MLflow run exists: bad data leaves no FAILED run
    lg = (cfg.get("logger") or {}).get("mlflow")
    run = tracking.tracked(
        instantiate(lg, run_name=f"{cfg.run_name}-ensemble{k}") if lg is not None else None, cfg
    )
    done: list[tuple[dict[str, float], str]] = []

    def resume_hint() -> str:  # ensembles refuse ckpt_path: the interrupted member resumes alone
        i = len(done)
        if i >= k:
            return "all members had finished: rerun the ensemble to combine them"
        return (
            f"member {i} was interrupted: resume it alone with ensemble.members=1 "
            f"seed={int(cfg.seed) + i} "
            f"ckpt_path={out_dir}/member_{i}/checkpoints/last.ckpt, or rerun the ensemble"
        )

    with tracking.run_lifecycle(
        run, cfg, tracking.run_tags(cfg, dm.lineage(), ensemble_members=k), resume_hint
    ):
        for i in range(k):
            member = _member_cfg(cfg, i, out_dir, run.run_id if run else None)
            done.append(train(member, dm, reporter))
        return _combine_and_test(cfg, dm, done, out_dir, run, reporter)


def _combine_and_test(
    cfg: DictConfig,
    dm: SpectraDataModule,
    members: list[tuple[dict[str, float], str]],
    out_dir: Path,
    run: TrackedRun | None,
    reporter: Reporter | None,
) -> tuple[dict[str, float], str]:
    from astrops.checkpoints import load_estimator
    from astrops.models.ensemble import Ensemble

    ens = Ensemble([load_estimator(best)[0].eval() for _, best in members])
    # the members' trainers are done: combine on the CPU, where the members were loaded
    dm.trainer = None
    dm.setup()
    codec, params, n_classes = (
        ens.task.codec,
        ens.param_names,
        ens.task.metric_options()["n_classes"],
    )
    # a flow mixture's calibration and test: 1 000 samples
    with posterior_samples(ens, TEST_SAMPLES):
        # the task decides (a regression ensemble's spread needs it most)
        results = ens.calibrate(*dm.calibration_tensors())
        x, y = dm.tensors["test"]
        dec = ens.predict_physical(x)
    results.update(score(dec, y, codec, params, "test", n_classes))
    keep = dm.informative_test_mask()
    if keep is not None:
        keep = torch.as_tensor(keep)
        results.update(
            score(
                {k_: v[keep] for k_, v in dec.items()},
                y[keep],
                codec,
                params,
                "test_informative",
                n_classes,
            )
        )
    x_val, y_val = dm.tensors["val"]
    with posterior_samples(ens, TEST_SAMPLES):
        results.update(
            score(ens.predict_physical(x_val), y_val, codec, params, "best/val", n_classes)
        )
        # what sweeps minimise (optimized_metric=val/loss): the ensemble's validation loss in the
        # task's units
        results["best/val/loss"] = ens.validation_loss(x_val, y_val)
    for key in [k_ for k_ in members[0][0] if k_.startswith(("test/", "test_informative/"))]:
        # the single members, for comparison
        vals = np.array([m[0].get(key, np.nan) for m in members])
        results[f"members_mean/{key}"], results[f"members_std/{key}"] = (
            float(vals.mean()),
            float(vals.std(ddof=1)),
        )

    info = {
        "kind": ens.kind,
        "parameters": params,
        "redshifts": dm.redshifts,
        "seeds": [cfg.seed + i for i in range(len(members))],
        "lineage": dm.lineage(),
        "mlflow_run_id": run.run_id if run else None,
        "test": {k_: v for k_, v in results.items() if k_.startswith("test/R2/")},
    }
    directory = save_ensemble(
        out_dir / "ensemble", [best for _, best in members], ens.calibration, info
    )
    results.update(_report(dm, ens, dec, y, results, out_dir, run, reporter))
    from astrops.tracking.mlflow_model import log_trained_model

    # one MLflow Model of the whole directory (log_model, register); before the results, which
    # MLflow would otherwise log a second time, linked to the model
    log_trained_model(cfg, run, directory, dm)
    if run is not None:
        run.set_tag("ensemble_dir", directory)
        run.log_results(results)
        run.log_file(directory / MANIFEST, "ensemble")
    log.info(
        "ensemble of %d: %s",
        len(members),
        ", ".join(f"R2 {p} {results[f'test/R2/{p}']:.3f}" for p in params),
    )
    return results, str(directory)


def _report(
    dm: SpectraDataModule,
    ens,
    dec: dict[str, torch.Tensor],
    y: torch.Tensor,
    results: dict[str, float],
    out_dir: Path,
    run: TrackedRun | None,
    reporter: Reporter | None,
) -> dict[str, float]:
    if reporter is None:
        return {}
    # a flow mixture's own samples and the truths' PIT under them too
    outputs = decoded_outputs(dec, y)
    if not ens.has_distribution:  # a regression ensemble's spread: no calibration suite
        outputs.pop("std", None)
    confusion, n_classes = None, ens.task.metric_options()["n_classes"]
    # the combined class probabilities: confusion matrices like a single classifier's
    if n_classes is not None:
        cm = ParameterMetrics(ens.param_names, n_classes, confusion=True)
        cm.update_decoded(dec, y, ens.task.codec)
        confusion = cm.confusion_matrices()
    columns = ens.task.table_columns
    return reporter(TestReport(dm, columns, results, outputs, out_dir, run, confusion=confusion))
