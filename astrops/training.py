"""``train(cfg)``: build every part from the Hydra config, fit, test, and leave a complete MLflow run."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from astrops import __version__, report, tracking
from astrops.calibration import calibrate_model
from astrops.checkpoints import read_checkpoint
from astrops.data import SpectraDataModule
from astrops.models.registry import build
from astrops.saliency import compute_saliency

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, dm: SpectraDataModule, meta: dict) -> L.LightningModule:
    """Backbone sized to the data, task head with the data's target codec, joined with the input transform."""
    # through the same name → class table as every loader, so whatever trains can be loaded again
    backbone = build(meta["model"], "backbone", input_shape=dm.input_shape)
    task = build(meta["task"], "task", codec=dm.codec, in_features=backbone.out_features)
    model = instantiate(cfg.model, backbone=backbone, task=task, transform=dm.transform, parameters=dm.parameters)
    model.meta = meta  # set after instantiate: meta holds configs with _target_ keys that must stay plain data
    return model


def checkpoint_meta(cfg: DictConfig, dm: SpectraDataModule) -> dict[str, Any]:
    """Plain-typed description stored in every checkpoint: enough to rebuild and apply the model."""
    return {
        "astrops_version": __version__,
        "model": OmegaConf.to_container(cfg.model.backbone, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "model_name": cfg.get("model_name", ""), "task_name": cfg.get("task_kind", ""),
        "input_shape": list(dm.input_shape), "n_classes": dm.n_classes,
        "prior_box": {p: [float(lo), float(hi)] for p, (lo, hi) in zip(dm.parameters, dm.ranges, strict=True)},
        "parameters": list(dm.parameters), "redshifts": list(dm.redshifts),
        "k": [float(x) for x in dm.k], "kept_bins": [int(i) for i in dm.kept_bins],
        "lineage": dm.lineage(), "config": OmegaConf.to_container(cfg, resolve=True),
    }


def model_card(model) -> dict[str, Any]:
    """What reusing the model needs besides its weights: grids, input scaling, target scaling, class edges."""
    t, c = model.transform, model.task.codec
    return {"parameters": model.param_names, "redshifts": model.meta.get("redshifts"), "k": model.meta.get("k"),
            "kept_bins": t.kept_bins.tolist(),
            "features": {"log10": bool(t.log10), "floor": t.floor.tolist(), "mean": t.mean.tolist(), "std": t.std.tolist()},
            "targets": {"mean": c.mean.tolist(), "std": c.std.tolist(), "class_edges": c.edges.tolist()},
            "lineage": model.meta.get("lineage")}


def _resume_run_id(ckpt_path: str | None) -> str | None:
    """The MLflow run a checkpoint belongs to, after the same safety checks as every loader."""
    if not ckpt_path:
        return None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist: give a checkpoint file (e.g. .../last.ckpt)")
    return read_checkpoint(ckpt_path)["astrops"].get("mlflow_run_id")


def train(cfg: DictConfig) -> tuple[dict[str, float], str]:
    """Fit and test one configuration; returns (metrics, best checkpoint path).

    The metrics hold the test results, the last validation values and ``best/val/loss``. The MLflow
    run is opened once the data have passed their checks (bad data leaves no run behind), and a run
    that fails at any later step is recorded as FAILED with its error.
    """
    if cfg.get("cpu_threads"):
        # the networks are tiny: one intra-op thread beats several (no sync/spin overhead per op);
        # measured in docs/benchmarks.md. Data-parallel work across processes is DDP's job.
        torch.set_num_threads(int(cfg.cpu_threads))
    run_id = _resume_run_id(cfg.get("ckpt_path"))
    mlflow_cfg = (cfg.get("logger") or {}).get("mlflow")
    if run_id and mlflow_cfg is not None and rank_zero_only.rank == 0:
        tracking.check_resumable(mlflow_cfg.tracking_uri, run_id, cfg.ckpt_path)
    # the data are read, checked and split before any MLflow run exists: bad data leaves no FAILED run
    dm: SpectraDataModule = instantiate(cfg.data)
    dm.prepare()
    L.seed_everything(cfg.seed, workers=True)  # the split has its own seed (data.split_seed)
    loggers = [instantiate(lg, run_id=run_id) if "mlflow" in name else instantiate(lg)
               for name, lg in (cfg.get("logger") or {}).items() if lg is not None]
    # under DDP every process runs this function; only rank 0 talks to MLflow (Lightning's loggers are
    # rank-zero only too), the other ranks keep the logger object so Lightning sees the same set-up
    mlf = tracking.mlflow_of(loggers) if rank_zero_only.rank == 0 else None
    previous = _terminate_gracefully_on_sigterm()
    try:
        return _fit_and_test(cfg, dm, loggers, mlf)
    except BaseException as exc:
        if mlf is not None and mlf.experiment.get_run(mlf.run_id).info.status != "FINISHED":
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
            last = (cfg.get("callbacks") or {}).get("model_checkpoint")
            hint = f"; resume with ckpt_path={last.dirpath}/last.ckpt" if interrupted and last else ""
            msg = "interrupted (SIGTERM or Ctrl-C)" if interrupted else f"{type(exc).__name__}: {exc}"
            mlf.experiment.set_tag(mlf.run_id, "error", (msg + hint)[:5000])
            mlf.experiment.set_terminated(mlf.run_id, "KILLED" if interrupted else "FAILED")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class TrainingTerminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a user's kill) turned into Lightning's graceful-interrupt path."""


def _terminate_gracefully_on_sigterm():
    """Make SIGTERM interrupt training like Ctrl-C: the run is closed as KILLED, last.ckpt stays resumable."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise TrainingTerminated(f"received signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _fit_and_test(cfg: DictConfig, dm: SpectraDataModule, loggers: list, mlf) -> tuple[dict[str, float], str]:
    t_start = time.perf_counter()
    meta = checkpoint_meta(cfg, dm)
    model = build_model(cfg, dm, meta)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if mlf is not None:
        meta["mlflow_run_id"] = mlf.run_id
        meta["mlflow_tracking_uri"] = tracking.redact(mlf._tracking_uri)
        tags = {"model": meta["model_name"], "task": meta["task_name"], **dm.lineage(), **tracking.sweep_tags(),
                "world_size": str(trainer.world_size),
                **{k: str(v) for k, v in (cfg.get("tags") or {}).items()}}
        tracking.log_run_start(mlf, cfg, tags)

    timing = {"setup": time.perf_counter() - t_start}
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    timing["fit"] = time.perf_counter() - t0
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else ""
    if trainer.interrupted:
        raise KeyboardInterrupt(f"training interrupted; resume with ckpt_path="
                                f"{ckpt_cb.last_model_path if ckpt_cb is not None else '<last.ckpt>'}")
    if best:  # test, calibrate and save the best weights, not the last ones
        model.load_state_dict(torch.load(best, map_location=model.device, weights_only=True)["state_dict"])
    calibration: dict[str, float] = {}
    if getattr(model.task, "calibrate", False):
        calibration = calibrate_model(model, *dm.tensors["val"])
        if best:  # the calibrated model is one checkpoint: the factors are buffers of the task head
            best = str(Path(best).with_name(Path(best).stem + "-calibrated.ckpt"))
            trainer.save_checkpoint(best, weights_only=False)
    t0 = time.perf_counter()
    trainer.test(model, datamodule=dm)
    timing["test"] = time.perf_counter() - t0
    results = {k: float(v) for k, v in model.test_results.items()}
    results.update(calibration)
    x_test, y_test = dm.tensors["test"]
    informative = torch.as_tensor(dm.informative_mask(dm.test_idx), device=x_test.device)
    if int(informative.sum()) >= 2:  # R² needs two samples
        results.update({k: v for k, v in model.evaluate(x_test[informative], y_test[informative],
                                                       prefix="test_informative").items() if not k.endswith("/loss")})
    if trainer.is_global_zero:
        t0 = time.perf_counter()
        _finish(cfg, model, dm, mlf, results, best)
        timing["artifacts"] = time.perf_counter() - t0
        log.info("time (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
        if mlf is not None:  # where a run's wall time goes, comparable across runs in the UI
            extra = {**{f"time/{k}_s": v for k, v in timing.items()},
                     **{k: v for k, v in results.items() if k.startswith(("calibration/", "test_informative/"))}}
            tracking.log_metrics(mlf, extra)
    # the model holds the best checkpoint's (calibrated) weights: its validation figures are what sweeps
    # optimise (best/val/loss, best/val/R2/overall, ...)
    results.update(model.evaluate(*dm.tensors["val"], prefix="best/val"))
    return results, best


def report_results(dm: SpectraDataModule, kind: str, results: dict[str, float], outputs: dict[str, np.ndarray],
                   out_dir: Path, mlf=None, confusion: list | None = None, history: list | None = None) -> None:
    """Console table, figures (pred-vs-true; PIT, coverage curve and coverage table when there is a std;
    confusion matrices) and files; logged to MLflow when ``mlf`` is given, else saved beside the run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = report.metrics_table(results, dm.parameters, kind)
    print(f"\nTest metrics ({dm.dataset.name}, {len(outputs.get('true', dm.test_idx))} test spectra):\n{table}\n")
    (out_dir / "metrics_table.md").write_text(table + "\n")
    figures = {"training_curves": report.training_curves(history)} if history else {}
    if "pred" in outputs:
        r2 = {p: results.get(f"test/R2/{p}", float("nan")) for p in dm.parameters}
        figures["pred_vs_true"] = report.pred_vs_true(outputs["pred"], outputs["true"], dm.parameters, r2)
    if "std" in outputs:
        z = (outputs["true"] - outputs["pred"]) / np.maximum(outputs["std"], 1e-12)
        xH = dm.xH[dm.test_idx][: len(z), len(dm.redshifts) // 2]  # DDP: rank 0 holds the first part
        (out_dir / "coverage.md").write_text(report.coverage_markdown(report.coverage_table(z, xH, dm.parameters)) + "\n")
        figures["pit"] = report.pit_histograms(report.norm_cdf(z), dm.parameters)
        figures["coverage_curve"] = report.coverage_curves(z, dm.parameters)
    if confusion:
        figures["confusion_matrices"] = report.confusion_matrices(confusion, dm.parameters)
    if mlf is None:
        for name, fig in figures.items():
            fig.savefig(out_dir / f"{name}.png", dpi=110)
        return
    tracking.log_figures(mlf, figures)
    for name in ("metrics_table.md", "coverage.md"):
        if (out_dir / name).exists():
            tracking.log_file(mlf, out_dir / name)


def _finish(cfg: DictConfig, model, dm: SpectraDataModule, mlf, results: dict[str, float], best: str) -> None:
    """Report, model card, best checkpoint as an artifact."""
    out_dir = Path(cfg.paths.output_dir)
    outputs = {k: torch.cat(v).numpy() for k, v in model.test_outputs.items()}
    report_results(dm, model.task.kind, results, outputs, out_dir, mlf, getattr(model, "confusion", None),
                   model.history)
    (out_dir / "best_checkpoint.txt").write_text(best + "\n")
    if mlf is None:
        return
    mlf.experiment.log_dict(mlf.run_id, model_card(model), "model_card.json")
    if cfg.get("saliency", True) and dm.tensors["test"][0].shape[0] > 1:
        # which k-bins and redshifts each parameter relies on (input gradients, permutation importance)
        fig, table = compute_saliency(model, *dm.tensors["test"])
        tracking.log_figures(mlf, {"saliency": fig})
        mlf.experiment.log_dict(mlf.run_id, table, "saliency.json")
    mlf.experiment.set_tag(mlf.run_id, "best_checkpoint", best)
    if best:
        tracking.log_file(mlf, best, "checkpoints")
    print(f"MLflow run {mlf.run_id} in experiment '{cfg.experiment_name}': "
          f"mlflow ui --backend-store-uri {tracking.redact(mlf._tracking_uri)}")
