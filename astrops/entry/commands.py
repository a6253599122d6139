"""The functions behind the thin ``@hydra.main`` scripts (importable for tests), each wrapped in
the one entry policy (:func:`astrops.entry.policy.entry_point`): rules checked first, bad input is
one line and exit status 2, a failing multirun job returns NaN to the sweeper."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from astrops import errors
from astrops.entry.policy import entry_point
from astrops.entry.rules import PREDICT_RULES, SIMULATE_RULES, TRAIN_RULES

log = logging.getLogger("astrops")


# what each entry point refuses (one line, exit status 2): astrops' own refusals and missing files;
# simulation and prediction also turn the libraries' ValueErrors about their inputs into that line
_SIMULATION_REFUSALS = (errors.SimulationConfigError, errors.StoreError, ValueError)
_TRAINING_REFUSALS = (
    errors.DataConfigError,
    errors.ObservationError,
    errors.EnsembleConfigError,
    errors.TrackingError,
    errors.InputError,
    errors.StoreError,
    FileNotFoundError,
)
_BASELINE_REFUSALS = (*_TRAINING_REFUSALS, errors.BaselineConfigError)
_PREDICTION_REFUSALS = (errors.InputError, FileNotFoundError, ValueError)


@entry_point(SIMULATE_RULES, _SIMULATION_REFUSALS, objective=False)
def run_simulate(cfg: DictConfig) -> None:
    """Build simulator + design from the config and fill the store."""
    from astrops.simulation import simulate_into_store
    from astrops.store import Store

    s = cfg.simulation
    simulator = instantiate(s.simulator, _convert_="all")
    design = instantiate(s.design, _convert_="all")
    summary = simulate_into_store(
        simulator,
        design,
        Store(cfg.paths.store_dir),
        workers=s.workers,
        shard=s.shard,
        num_shards=s.num_shards,
        name=s.name,
        retry_failed=s.retry_failed,
        progress=cfg.progress,
    )
    print(summary)  # the result of the command (stdout), like train.py's model path


@entry_point(TRAIN_RULES, _TRAINING_REFUSALS)
def run_train(cfg: DictConfig) -> float | None:
    """Train a network (or an ensemble); print the best checkpoint (or the ensemble's directory) as
    the very last line; return ``optimized_metric`` for sweepers."""
    from lightning.pytorch.utilities import rank_zero_only

    from astrops.analysis.run_report import report_run
    from astrops.entry import console
    from astrops.training import train, train_ensemble

    console.one_copy_of_lightning_lines()  # Lightning is loaded now

    ensemble = int((cfg.get("ensemble") or {}).get("members", 1)) > 1
    # task=emulator: the simulator's inverse direction, θ → Δ²
    if (cfg.get("task") or {}).get("emulates"):
        from astrops.training.emulator import train_emulator

        metrics, best = train_emulator(cfg)
    else:
        train_run = train_ensemble if ensemble else train
        metrics, best = train_run(cfg, reporter=report_run)
    if rank_zero_only.rank == 0:  # under DDP the other processes stay silent: one last line
        sys.stdout.flush()
        print(best, flush=True)
    name = cfg.get("optimized_metric")
    return metrics.get(f"best/{name}", metrics.get(name)) if name else None


# the keys baselines share with train.py (seed, data.*, cpu_threads)
@entry_point(TRAIN_RULES, _BASELINE_REFUSALS)
def run_baselines(cfg: DictConfig) -> float | None:
    """Fit one scikit-learn baseline on the networks' data and split; return
    ``optimized_metric``."""
    from astrops.analysis.run_report import report_run
    from astrops.entry import console
    from astrops.training.baselines import run_baseline

    console.one_copy_of_lightning_lines()  # Lightning is loaded now

    results = run_baseline(cfg, reporter=report_run)
    name = cfg.get("optimized_metric")
    return results.get(name) if name else None


@entry_point(PREDICT_RULES, _PREDICTION_REFUSALS, objective=False)
def run_predict(cfg: DictConfig) -> None:
    """Predict parameters for the spectra in ``cfg.input``: a plain CSV (header + rows) at
    ``cfg.output`` and its metadata (checkpoint, lineage, prior box, columns) beside it as
    ``<output stem>.json``."""
    # torch and numpy only: a plain nn.Module, no Lightning, MLflow, torchmetrics or pandas
    # (docs/benchmarks.md)
    import numpy as np

    from astrops.errors import InputError
    from astrops.inference import load_model
    from astrops.limits import MAX_PLOTS
    from astrops.spectra_files import read_spectra_npz, write_csv

    k, delta, redshifts, errs = read_spectra_npz(cfg.input, with_errs=True)
    predictor = load_model(cfg.ckpt_path)
    n = len(predictor.check(k, delta, redshifts, errs))  # input refused here, before any work
    n_samples, plot = int(cfg.get("samples") or 0), bool(cfg.get("plot"))
    if plot and n > MAX_PLOTS:
        raise InputError(
            f"plot=true draws one corner plot per spectrum and the input has {n}: give at most "
            f"{MAX_PLOTS} spectra, or plot=false with samples=N and plot the npz yourself"
        )
    columns = predictor.columns(k, delta, redshifts, errs)
    output = Path(cfg.output)
    sidecar = output.with_suffix(".json")
    samples = (
        predictor.sample(
            k,
            delta,
            max(n_samples, 2000 if plot else 0),
            redshifts,
            seed=int(cfg.get("seed") or 0),
        )
        # refused in one line, before anything is written, for point models
        if n_samples or plot
        else None
    )
    write_csv(columns, output)  # what DataFrame.to_csv(index=False) writes
    sidecar.write_text(
        json.dumps(
            prediction_metadata(predictor, cfg, n, list(columns)),
            indent=1,
            default=str,
            allow_nan=False,
        )
        + "\n"
    )
    if n_samples:
        path = output.with_name(f"{output.stem}_samples.npz")
        np.savez(path, samples=samples[:, :n_samples], parameters=np.array(predictor.parameters))
        log.info("wrote %d posterior samples per spectrum to %s", n_samples, path)
    if plot:
        from astrops.plotting import write_corner_plots

        paths = write_corner_plots(samples, predictor, output.with_name(f"{output.stem}_corner"))
        log.info("wrote %d corner plots: %s ... %s", len(paths), paths[0], paths[-1])
    log.info("wrote %d predictions to %s (metadata: %s)", n, output, sidecar)
    print(os.path.abspath(output))


def prediction_metadata(predictor, cfg: DictConfig, n: int, columns: list[str]) -> dict:
    """What a predictions CSV came from and what its columns mean (its ``.json`` sidecar)."""
    from astrops.parameters import UNITS

    meta = predictor.meta
    return {
        "predictions": os.path.abspath(cfg.output),
        "checkpoint": os.path.abspath(cfg.ckpt_path),
        "input": os.path.abspath(cfg.input),
        "n_spectra": n,
        "columns": columns,
        "parameters": {
            p: {"unit": UNITS.get(p, ""), "prior": list(predictor.prior_box[p])}
            for p in predictor.parameters
        },
        "model": {
            k: meta.get(k)
            for k in ("model_name", "task_config", "redshifts", "mlflow_run_id", "astrops_version")
        },
        "ensemble": meta.get("ensemble"),
        "observation": meta.get("observation", "none"),
        "lineage": meta.get("lineage"),
        "notes": "values are clipped to the prior box; ood_score is the conformal p-value of "
        "the input against the training spectra, noise included (flagged below "
        f"{predictor.novelty.alpha if predictor.novelty else 'n/a'}); out_of_distribution/"
        "ood_reason say which rows and why",
    }
