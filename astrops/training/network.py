"""``train(cfg)``: build every part from the Hydra config, fit, calibrate, test, and leave a
complete MLflow run (through :func:`astrops.tracking.run_lifecycle`, like every kind of run)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from astrops import __version__, tracking
from astrops.checkpoints import read_checkpoint
from astrops.data import SpectraDataModule
from astrops.models.flow_predict import TEST_SAMPLES, posterior_samples
from astrops.models.registry import build
from astrops.tracking import TrackedRun
from astrops.training.reporting import Reporter, TestReport, report

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, dm: SpectraDataModule, meta: dict) -> L.LightningModule:
    """Backbone sized to the data, task head with the data's target codec, joined with the input
    transform.

    Built through the same name → class table as every loader, so whatever trains can be loaded
    again. ``meta`` is complete (run id included) before it is attached; it is attached after
    ``instantiate`` because it holds configs whose ``_target_`` keys must stay plain data, not be
    instantiated.
    """
    backbone = build(meta["model"], "backbone", input_shape=dm.input_shape)
    task = build(meta["task"], "task", codec=dm.codec, in_features=backbone.out_features)
    model = instantiate(
        cfg.model, backbone=backbone, task=task, transform=dm.transform, parameters=dm.parameters
    )
    model.meta = meta
    return model


def checkpoint_meta(
    cfg: DictConfig, dm: SpectraDataModule, run: TrackedRun | None = None
) -> dict[str, Any]:
    """Plain-typed description stored in every checkpoint: enough to rebuild and apply the model,
    and the MLflow run it belongs to (resuming continues that run)."""
    meta = {
        "astrops_version": __version__,
        "model": OmegaConf.to_container(cfg.model.backbone, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "model_name": cfg.get("model_name", ""),
        "task_config": cfg.get("task_config", ""),
        "input_shape": list(dm.input_shape),
        "n_classes": dm.n_classes,
        "prior_box": {
            p: [float(lo), float(hi)] for p, (lo, hi) in zip(dm.parameters, dm.ranges, strict=True)
        },
        "parameters": list(dm.parameters),
        "redshifts": list(dm.redshifts),
        "k": [float(x) for x in dm.k],
        "kept_bins": [int(i) for i in dm.kept_bins],
        "lineage": dm.lineage(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "observation": dm.observation.metadata() if dm.observation is not None else "none",
        "noise_sigma": None if dm.sigma is None else dm.sigma[:, dm.kept_bins].tolist(),
        "ood": dm.novelty.to_meta(),
    }
    if run is not None:
        meta.update(
            mlflow_run_id=run.run_id, mlflow_tracking_uri=tracking.redact(run.tracking_uri)
        )
    return meta


def _resume_run_id(cfg: DictConfig) -> str | None:
    """The MLflow run a checkpoint belongs to (after the same safety checks as every loader);
    refuses, before anything is created, to resume into a run the tracking store does not hold."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist: give a checkpoint file (e.g. .../last.ckpt)"
        )
    run_id = read_checkpoint(ckpt_path)["astrops"].get("mlflow_run_id")
    mlflow_cfg = (cfg.get("logger") or {}).get("mlflow")
    if run_id and mlflow_cfg is not None and rank_zero_only.rank == 0:
        tracking.check_resumable(mlflow_cfg.get("tracking_uri"), run_id, ckpt_path)
    return run_id


def _trainer(cfg: DictConfig, run_id: str | None) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers (the MLflow one resumes
    ``run_id``)."""
    loggers = [
        instantiate(lg, run_id=run_id) if "mlflow" in name else instantiate(lg)
        for name, lg in (cfg.get("logger") or {}).items()
        if lg is not None
    ]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def _resume_hint(cfg: DictConfig, last_ckpt: str | None = None) -> str:
    """The command that continues this run from its last checkpoint (the same overrides, plus
    ckpt_path); an ensemble member resumes alone, since ensembles refuse ckpt_path."""
    last = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if not last and not last_ckpt:
        return ""
    path = last_ckpt or f"{last.dirpath}/last.ckpt"
    member = "ensemble_member" in (cfg.get("tags") or {})
    drop = ("ckpt_path=", "seed=", "ensemble.members=") if member else ("ckpt_path=",)
    overrides = [
        o
        for o in tracking.sweep_tags().get("overrides", "").split()
        if o != "(none)" and not o.lstrip("+~").startswith(drop)
    ]
    if member:
        overrides += ["ensemble.members=1", f"seed={cfg.seed}"]
        args = " ".join([*overrides, f"ckpt_path={path}"])
        return f"resume this member alone with: python train.py {args}"
    args = " ".join([*overrides, f"ckpt_path={path}"])
    return f"resume with: python train.py {args}"


def train(
    cfg: DictConfig, dm: SpectraDataModule | None = None, reporter: Reporter | None = None
) -> tuple[dict[str, float], str]:
    """Fit and test one configuration; returns (metrics, best checkpoint path).

    The metrics hold the test results, the last validation values and ``best/val/*``. The data are
    read, checked and split before any MLflow run exists (bad data leaves no FAILED run); ``dm`` is
    a prepared data module to reuse (ensemble members share one). Under DDP every process runs this
    function; only rank 0 talks to MLflow (the other ranks keep the logger so Lightning sees one
    set-up). ``reporter`` writes the run's report (table, figures, calibration suite, model card,
    saliency: :func:`astrops.analysis.run_report.report_run`, which the entry point passes).
    """
    t_start = time.perf_counter()
    if cfg.get("cpu_threads"):
        # the networks are tiny: one intra-op thread beats several (no sync/spin overhead per op);
        # measured in docs/benchmarks.md. Data-parallel work across processes is DDP's job.
        torch.set_num_threads(int(cfg.cpu_threads))
    run_id = _resume_run_id(cfg)
    if dm is None:
        dm = instantiate(cfg.data)
        dm.prepare()
    L.seed_everything(cfg.seed, workers=True)  # the split has its own seed (data.split_seed)
    trainer = _trainer(cfg, run_id)
    run = (
        tracking.tracked(tracking.mlflow_of(trainer.loggers), cfg)
        if rank_zero_only.rank == 0
        else None
    )
    tags = tracking.run_tags(cfg, dm.lineage(), world_size=trainer.world_size)
    with tracking.run_lifecycle(run, cfg, tags, lambda: _resume_hint(cfg)):
        model = build_model(cfg, dm, checkpoint_meta(cfg, dm, run))
        timing = {"setup": time.perf_counter() - t_start}
        return _fit_and_test(cfg, dm, trainer, model, run, timing, reporter)


@contextmanager
def _timed(timing: dict[str, float], name: str):
    t0 = time.perf_counter()
    yield
    timing[name] = time.perf_counter() - t0


def _fit_and_test(
    cfg: DictConfig,
    dm: SpectraDataModule,
    trainer: L.Trainer,
    model,
    run: TrackedRun | None,
    timing: dict[str, float],
    reporter: Reporter | None,
) -> tuple[dict[str, float], str]:
    with _timed(timing, "fit"):
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        # Lightning turns Ctrl-C / SIGTERM into sys.exit(1) after its shutdown;
        except BaseException as exc:
            # an interrupt landing mid-write may surface as another error: either way the run can
            # resume (trainer.interrupted alone is no proof: Lightning marks every failed fit
            # INTERRUPTED)
            interrupted = (
                isinstance(exc, KeyboardInterrupt)
                or isinstance(exc.__context__, KeyboardInterrupt)
                or getattr(trainer, "received_sigterm", False)
                or (isinstance(exc, SystemExit) and trainer.interrupted)
            )
            if not interrupted:
                raise
            ckpt_cb = trainer.checkpoint_callback
            raise KeyboardInterrupt(
                _resume_hint(cfg, ckpt_cb.last_model_path if ckpt_cb else None)
            ) from None
    best = _restore_best(cfg, trainer, model)
    calibration = model.calibrate(*dm.calibration_tensors())
    # the calibrated model is one checkpoint: the factors are buffers of the task head
    if calibration and best:
        best = str(Path(best).with_name(Path(best).stem + "-calibrated.ckpt"))
        trainer.save_checkpoint(best, weights_only=False)
    # a flow's test summaries: 1 000 samples
    with _timed(timing, "test"), posterior_samples(model, TEST_SAMPLES):
        trainer.test(model, datamodule=dm, verbose=False)  # our table, not Lightning's
    results = {**{k: float(v) for k, v in model.test_results.items()}, **calibration}
    keep = dm.informative_test_mask()
    if keep is not None:
        x_test, y_test = dm.tensors["test"]
        keep = torch.as_tensor(keep, device=x_test.device)
        with posterior_samples(model, TEST_SAMPLES):
            results.update(
                {
                    k: v
                    for k, v in model.evaluate(
                        x_test[keep], y_test[keep], prefix="test_informative"
                    ).items()
                    if not k.endswith("/loss")
                }
            )
    if trainer.is_global_zero:
        with _timed(timing, "artifacts"):
            results.update(_artifacts(cfg, model, dm, run, results, best, reporter))
        log.debug("time (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    # the model holds the best checkpoint's (calibrated) weights: its validation figures are what
    # sweeps optimise (best/val/loss, best/val/R2/overall, ...)
    with posterior_samples(model, TEST_SAMPLES):
        results.update(model.evaluate(*dm.tensors["val"], prefix="best/val"))
    if run is not None:  # once, at the final step; time/* says where the run's wall time went
        run.log_results(
            {**results, **{f"time/{k}_s": v for k, v in timing.items()}}, step=trainer.global_step
        )
    return results, best


def _restore_best(cfg: DictConfig, trainer: L.Trainer, model) -> str:
    """Load the best checkpoint's weights into ``model`` (test, calibrate and save those, not the
    last ones); returns its path ("" without checkpointing). An interrupted fit stops here, saying
    how to resume."""
    ckpt_cb = trainer.checkpoint_callback
    if trainer.interrupted:
        raise KeyboardInterrupt(
            _resume_hint(cfg, ckpt_cb.last_model_path if ckpt_cb is not None else None)
        )
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else ""
    if best:
        model.load_state_dict(
            torch.load(best, map_location=model.device, weights_only=True)["state_dict"]
        )
    return best


def _artifacts(
    cfg: DictConfig,
    model,
    dm: SpectraDataModule,
    run: TrackedRun | None,
    results: dict[str, float],
    best: str,
    reporter: Reporter | None,
) -> dict[str, float]:
    """The report (through ``reporter``), the best checkpoint as an artifact and the MLflow Model;
    returns the report's metrics."""
    out_dir = Path(cfg.paths.output_dir)
    outputs = {k: torch.cat(v).numpy() for k, v in model.test_outputs.items()}
    test = TestReport(
        dm,
        model.task.table_columns,
        results,
        outputs,
        out_dir,
        run,
        model=model,
        confusion=model.confusion,
        history=model.history,
        saliency=bool(cfg.get("saliency", True)),
    )
    metrics = report(reporter, test)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "best_checkpoint.txt").write_text(best + "\n")
    if run is None:
        return metrics
    run.set_tag("best_checkpoint", best)
    if best:
        run.log_file(best, "checkpoints")
        from astrops.tracking.mlflow_model import log_trained_model

        log_trained_model(cfg, run, best, dm)  # the MLflow Model (log_model, register)
    return metrics
