"""What a run shows in the MLflow UI: the parameters people compare and at most 40 metric keys.

MLflow's compare page lists every metric key of the selected runs and plots every parameter: with
the whole flattened config (checkpoint paths, ``_target_`` strings) and every metric of every stage
(≈170 keys), the numbers people look for — test R² — drown. So a run logs

* **params**: what distinguishes runs (model, task, backbone sizes, optimiser, batch size,
  redshifts, observation, dataset, split seed, seed, ...); the whole resolved config stays in
  ``config.yaml``;
* **metrics**: per epoch the training and validation loss and validation R² (learning curves), and
  once, at the final step, the summary in :data:`SUMMARY` — every result, all stages and
  parameters, is in the ``metrics.json`` artifact beside them
  (:meth:`astrops.tracking.TrackedRun.log_results`).
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

MAX_METRIC_KEYS = 40
# logged by Lightning every epoch (loss curves, learning rate); everything else it computes stays
# out
PER_EPOCH = re.compile(r"(train|val)/loss|val/R2/overall|epoch|lr-.*")
# logged once per run from its final results
SUMMARY = re.compile(
    "|".join(
        (
            # accuracy per parameter (and R² overall)
            r"test/R2/[^/]+|test/(RMSE|MAE)/(?!overall)[^/]+",
            # where the spectrum can constrain the parameters
            r"test_informative/R2/[^/]+",
            # predictive distributions: interval coverage
            r"test/coverage(68|95)/(?!overall)[^/]+",
            # ... SBC rank uniformity, TARP (astrops.diagnostics)
            r"test/sbc_p/[^/]+|test/tarp_atc",
            r"test/(NLL|CRPS|ECE|acc_pm1)/overall",  # proper scores, class calibration
            r"test/(acc|F1)/[^/]+",  # classification accuracy and F1, per parameter and overall
            r"best/val/loss",  # what sweeps minimise
            # emulators (θ → Δ²): mean and scatter per redshift
            r"test/(R2_mean|within1sigma|within2sigma)/z[^/]+",
            r"calibration/.+",  # post-hoc factors
            r"time/.+",  # where the wall time went
            r"members_(mean|std)/test/R2/overall",  # an ensemble's single members, for comparison
        )
    )
)


def is_summary(key: str) -> bool:
    return SUMMARY.fullmatch(key) is not None


def is_per_epoch(key: str) -> bool:
    return PER_EPOCH.fullmatch(key) is not None


def _plain(cfg: Any, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _without_targets(section: Any, prefix: str) -> dict[str, Any]:
    """A config section flattened to ``prefix/key``, without Hydra's ``_target_``/``_partial_``
    keys."""
    if not isinstance(section, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in section.items():
        if k.startswith("_"):
            continue
        if isinstance(v, dict):
            out.update(_without_targets(v, f"{prefix}/{k}"))
        else:
            out[f"{prefix}/{k}"] = v
    return out


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The parameters runs are compared by (strings, as MLflow stores them); absent keys are left
    out."""
    params: dict[str, Any] = {
        "model": cfg.get("model_name"),
        "task": cfg.get("task_config"),
        "seed": cfg.get("seed"),
        "dataset": _plain(cfg, "data.dataset"),
        "redshifts": _plain(cfg, "data.redshifts"),
        "observation": _plain(cfg, "observation.name") or "none",
        "split_seed": _plain(cfg, "data.split_seed"),
        "batch_size": _plain(cfg, "data.batch_size"),
        "train_size": _plain(cfg, "data.train_size"),
        "kfold": _plain(cfg, "data.kfold"),
        "fold": _plain(cfg, "data.fold") if _plain(cfg, "data.kfold") else None,
        "test_dataset": _plain(cfg, "data.test_dataset"),
        "feature_transform": _plain(cfg, "data.feature_transform"),
        "lr": _plain(cfg, "model.optimizer.lr"),
        "weight_decay": _plain(cfg, "model.optimizer.weight_decay"),
        "max_epochs": _plain(cfg, "trainer.max_epochs"),
        "ensemble_members": _plain(cfg, "ensemble.members"),
    }
    params.update(_without_targets(_plain(cfg, "model.backbone"), "backbone"))
    params.update(_without_targets(_plain(cfg, "task"), "task"))
    params.update(_without_targets(_plain(cfg, "baseline"), "baseline"))
    return {k: str(v) for k, v in params.items() if v is not None}
