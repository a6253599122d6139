"""Functions behind the thin ``@hydra.main`` entry points (kept importable for tests)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from astrops.store import Store, StoreError
from astrops.validation import PREDICT_RULES, SIMULATE_RULES, TRAIN_RULES, ConfigValueError, validate

log = logging.getLogger("astrops")


def run_simulate(cfg: DictConfig) -> int:
    """Build simulator + design from the config and fill the store; 0 on success, 2 on bad input."""
    from astrops.simulation import SimulationConfigError, simulate_into_store

    s = cfg.simulation
    try:
        validate(cfg, SIMULATE_RULES)
        simulator = instantiate(s.simulator, _convert_="all")
        design = instantiate(s.design, _convert_="all")
        summary = simulate_into_store(simulator, design, Store(cfg.paths.store_dir), workers=s.workers,
                                      shard=s.shard, num_shards=s.num_shards, name=s.name,
                                      retry_failed=s.retry_failed, progress=cfg.progress)
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, SimulationConfigError | ValueError):
            raise
        return _bad_input(exc.__cause__)
    except (SimulationConfigError, StoreError, ValueError) as exc:  # ConfigValueError included
        return _bad_input(exc)
    log.info("%s", summary)
    return 0


def run_train(cfg: DictConfig) -> float | None:
    """Train; print the best checkpoint as the very last line; return ``optimized_metric`` for sweepers."""
    try:  # before the heavy imports: a typo is refused in the time Python takes to start
        validate(cfg, TRAIN_RULES)
    except ConfigValueError as exc:
        if _in_multirun():
            log.error("job failed: %s", exc)
            return float("nan")
        sys.exit(_bad_input(exc))
    from astrops.data import DataConfigError
    from astrops.ensemble_training import EnsembleConfigError
    from astrops.inference import InputError
    from astrops.tracking import TrackingError
    from astrops.training import train

    try:
        if int((cfg.get("ensemble") or {}).get("members", 1)) > 1:
            from astrops.ensemble_training import train_ensemble

            metrics, best = train_ensemble(cfg)
        else:
            metrics, best = train(cfg)
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, DataConfigError | TrackingError | ValueError):
            raise
        sys.exit(_bad_input(exc.__cause__))
    except (DataConfigError, EnsembleConfigError, TrackingError, InputError, StoreError, FileNotFoundError) as exc:
        if _in_multirun():
            log.error("job failed: %s", exc)
            return float("nan")
        sys.exit(_bad_input(exc))
    except Exception:
        if not _in_multirun():
            raise
        # one failing job must not end the sweep: its MLflow run is already marked FAILED with the error
        log.exception("job failed; the sweep goes on")
        return float("nan")
    name = cfg.get("optimized_metric")
    value = metrics.get(f"best/{name}", metrics.get(name)) if name else None
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP the other processes stay silent: one last line
        sys.stdout.flush()
        print(best, flush=True)
    return value


def run_predict(cfg: DictConfig) -> int:
    """Predict parameters for the spectra in ``cfg.input``: a plain CSV (header + rows) at ``cfg.output``
    and its metadata (checkpoint, lineage, prior box, columns) beside it as ``<output stem>.json``."""
    try:  # the output path too: a bad one must not cost a whole prediction
        validate(cfg, PREDICT_RULES)
    except ConfigValueError as exc:
        return _bad_input(exc)
    from astrops.inference import InputError, load_model, read_spectra_npz

    try:
        k, delta, redshifts = read_spectra_npz(cfg.input)
        predictor = load_model(cfg.ckpt_path)
        df = predictor.predict(k, delta, redshifts)
    except (InputError, FileNotFoundError, ValueError) as exc:
        return _bad_input(exc)
    output = Path(cfg.output)
    sidecar = output.with_suffix(".json")
    df.to_csv(output, index=False)
    sidecar.write_text(json.dumps(prediction_metadata(predictor, cfg, len(df), list(df.columns)), indent=1,
                                  default=str, allow_nan=False) + "\n")
    log.info("wrote %d predictions to %s (metadata: %s)", len(df), output, sidecar)
    print(os.path.abspath(output))
    return 0


def prediction_metadata(predictor, cfg: DictConfig, n: int, columns: list[str]) -> dict:
    """What a predictions CSV came from and what its columns mean (its ``.json`` sidecar)."""
    meta = predictor.meta
    units = {"HII_EFF_FACTOR": "dimensionless", "ION_Tvir_MIN": "log10(K)", "R_BUBBLE_MAX": "Mpc"}
    return {"predictions": os.path.abspath(cfg.output), "checkpoint": os.path.abspath(cfg.ckpt_path),
            "input": os.path.abspath(cfg.input), "n_spectra": n, "columns": columns,
            "parameters": {p: {"unit": units.get(p, ""), "prior": list(predictor.prior_box[p])}
                           for p in predictor.parameters},
            "model": {k: meta.get(k) for k in ("model_name", "task_name", "redshifts", "mlflow_run_id",
                                               "astrops_version")},
            "ensemble": meta.get("ensemble"), "observation": meta.get("observation", "none"),
            "lineage": meta.get("lineage"),
            "notes": "values are clipped to the prior box; out_of_distribution/ood_reason say which rows and why"}


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _bad_input(exc: Exception) -> int:
    """One line naming the problem and the fix; exit status 2."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
