"""``train_ensemble(cfg)``: K members trained by :func:`astrops.training.train` (one MLflow run each,
nested under the ensemble's run), combined, calibrated on the validation split, tested, saved as a
directory that ``predict.py ckpt_path=`` accepts.

Members differ only in the training seed (``seed + i``); ``data.split_seed`` is shared, so they see
one split and the validation data stay unseen by all of them.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from astrops import ensemble, tracking
from astrops.data import SpectraDataModule
from astrops.metrics import score
from astrops.training import report_results, train

log = logging.getLogger(__name__)


class EnsembleConfigError(ValueError):
    """An ensemble configuration that cannot run (one line, names the fix)."""


def _member_cfg(cfg: DictConfig, i: int, out_dir: Path, parent_run: str | None) -> DictConfig:
    m = copy.deepcopy(cfg)
    with open_dict(m):
        m.seed = int(cfg.seed) + i
        m.paths.output_dir = str(out_dir / f"member_{i}")
        m.run_name = f"{cfg.run_name}-member{i}"
        m.ensemble.members = 1
        m.tags = {**(cfg.get("tags") or {}), "ensemble_member": i,
                  **({"mlflow.parentRunId": parent_run} if parent_run else {})}
    return m


def train_ensemble(cfg: DictConfig) -> tuple[dict[str, float], str]:
    """Train ``cfg.ensemble.members`` members and evaluate their combination; returns (metrics, directory)."""
    k = int(cfg.ensemble.members)
    devices = cfg.trainer.get("devices", 1)
    if not (devices in (1, "1") or devices == [0]):
        raise EnsembleConfigError(f"ensemble.members={k} with trainer.devices={devices}: members train one after another on "
                         "one device; use trainer=default (or train members as separate jobs: -m seed=1,2,3)")
    if cfg.get("ckpt_path"):
        raise EnsembleConfigError("ckpt_path= with ensemble.members > 1: every member would resume the same checkpoint; "
                                  "resume the interrupted member alone (ensemble.members=1 seed=<its seed> ckpt_path=...)")
    if not (cfg.get("callbacks") or {}).get("model_checkpoint") or cfg.trainer.get("fast_dev_run"):
        raise EnsembleConfigError("ensemble.members > 1 needs callbacks.model_checkpoint and no fast_dev_run: "
                                  "the ensemble is built from the members' best checkpoints")
    out_dir = Path(cfg.paths.output_dir)
    # data checked before the ensemble's MLflow run exists (each member prepares its own copy again)
    dm: SpectraDataModule = instantiate(cfg.data)
    dm.prepare()
    lg = (cfg.get("logger") or {}).get("mlflow")
    mlf = instantiate(lg, run_name=f"{cfg.run_name}-ensemble{k}") if lg is not None else None
    try:
        return _train_and_combine(cfg, dm, k, out_dir, mlf)
    except BaseException as exc:
        if mlf is not None:
            mlf.experiment.set_tag(mlf.run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
            mlf.experiment.set_terminated(mlf.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise


def _train_and_combine(cfg: DictConfig, dm: SpectraDataModule, k: int, out_dir: Path,
                       mlf) -> tuple[dict[str, float], str]:
    members = [train(_member_cfg(cfg, i, out_dir, mlf.run_id if mlf else None)) for i in range(k)]
    from astrops.inference import load_model

    ens = ensemble.Ensemble([load_model(best).model for _, best in members])
    dm.setup()
    codec, params = ens.task.codec, ens.param_names
    results: dict[str, float] = {}
    if cfg.task.get("calibrate", True):  # the members' spread (regression) needs it most
        results.update(ens.calibrate(*dm.tensors["val"]))
    n_classes = getattr(ens.task, "n_classes", None)
    x, y = dm.tensors["test"]
    dec = ens.predict_physical(x)
    results.update(score(dec, y, codec, params, "test", n_classes))
    informative = torch.as_tensor(dm.informative_mask(dm.test_idx))
    if int(informative.sum()) >= 2:  # R² needs two samples
        results.update(score({k_: v[informative] for k_, v in dec.items()}, y[informative], codec, params,
                             "test_informative", n_classes))
    val_dec = ens.predict_physical(dm.tensors["val"][0])
    results.update(score(val_dec, dm.tensors["val"][1], codec, params, "best/val", n_classes))
    # what sweeps minimise (optimized_metric=val/loss): the ensemble's validation NLL — Gaussian (mixture
    # mean and variance, training-std units) or the cross-entropy of the averaged class probabilities
    if "probs" in val_dec:
        target = codec.to_class(dm.tensors["val"][1])
        picked = torch.gather(val_dec["probs"], 2, target.unsqueeze(-1)).clamp_min(1e-12)
        results["best/val/loss"] = float(-picked.log().mean() * len(params))
    else:
        results["best/val/loss"] = results["best/val/NLL/overall"] * len(params)
    for key in [k_ for k_ in members[0][0] if k_.startswith(("test/", "test_informative/"))]:
        vals = np.array([m[0].get(key, np.nan) for m in members])  # the single members, for comparison
        results[f"members_mean/{key}"], results[f"members_std/{key}"] = float(vals.mean()), float(vals.std(ddof=1))

    info = {"kind": ens.kind, "parameters": params, "redshifts": dm.redshifts, "seeds": [cfg.seed + i for i in range(k)],
            "lineage": dm.lineage(), "mlflow_run_id": mlf.run_id if mlf else None,
            "test": {k_: v for k_, v in results.items() if k_.startswith("test/R2/")}}
    directory = ensemble.save(out_dir / "ensemble", [best for _, best in members], ens.calibration, info)
    outputs = {"pred": dec["value"].numpy(), "true": y.numpy()}
    if "std" in dec:
        outputs["std"] = dec["std"].numpy()
    confusion = None
    if "probs" in dec:
        from astrops.metrics import ParameterMetrics

        cm = ParameterMetrics(params, n_classes, confusion=True)
        cm.update_decoded(dec, y, codec)
        confusion = cm.confusion_matrices()
    report_results(dm, ens.kind, results, outputs, out_dir, mlf, confusion)
    if mlf is not None:
        tracking.log_run_start(mlf, cfg, {"model": cfg.get("model_name", ""), "task": cfg.get("task_kind", ""),
                                          "ensemble_members": k, **dm.lineage(), **tracking.sweep_tags(),
                                          "ensemble_dir": str(directory),
                                          **{k_: str(v) for k_, v in (cfg.get("tags") or {}).items()}})
        tracking.log_metrics(mlf, results)
        tracking.log_file(mlf, directory / ensemble.MANIFEST, "ensemble")
        mlf.experiment.set_terminated(mlf.run_id, "FINISHED")
    log.info("ensemble of %d: %s", k, ", ".join(f"R2 {p} {results[f'test/R2/{p}']:.3f}" for p in params))
    return results, str(directory)
