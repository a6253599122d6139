"""Classical scikit-learn baselines: ``python baselines.py [-m] baseline=random_forest,knn,...``.

A network's R² says little until it stands beside what a random forest or a ridge regression
reaches on the same problem. So a baseline here sees exactly what the networks see: the same
:class:`SpectraDataModule`, the same train/val/test indices (it fits on the training split only, as
the networks do), the same fitted input transform and the same standardised targets. Its MLflow run
lands in the same store and experiment with the same metric keys and lineage tags (``test_hash``),
so it sits beside neural runs in the MLflow UI and in ``python -m astrops compare``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from astrops import tracking
from astrops.data import SpectraDataModule
from astrops.errors import BaselineConfigError
from astrops.metrics import ParameterMetrics
from astrops.training.reporting import Reporter, TestReport, report

log = logging.getLogger(__name__)
STAGES = ("train", "val", "test")


def features(dm: SpectraDataModule, idx: np.ndarray) -> np.ndarray:
    """(len(idx), n_z * n_kept): the networks' input (kept bins, log floor, standardised),
    flattened."""
    x = torch.as_tensor(np.nan_to_num(dm.delta[idx], nan=0.0), dtype=torch.float32)
    with torch.no_grad():
        return dm.transform(x).flatten(1).numpy()


def evaluate(
    dm: SpectraDataModule, z_pred: np.ndarray, idx: np.ndarray, stage: str
) -> dict[str, float]:
    """Metrics in physical units with the neural runs' keys; ``{stage}/loss`` is their regression
    loss (MSE on standardised targets), so ``val/loss`` compares with ``val/loss`` of a network."""
    z = torch.as_tensor(z_pred, dtype=torch.float32)
    y = torch.as_tensor(dm.params[idx], dtype=torch.float32)
    metrics = ParameterMetrics(dm.parameters)
    metrics.update(dm.codec.decode(z), y)
    loss = float(torch.nn.functional.mse_loss(z, dm.codec.encode(y)))
    return {f"{stage}/loss": loss, **metrics.compute(stage, dm.codec.std)}


def fit_and_evaluate(
    estimator: Any, dm: SpectraDataModule, name: str, cpu_threads: int | None
) -> tuple[dict[str, float], np.ndarray, dict[str, float]]:
    """Fit on the training split; metrics on train/val/test and the informative test subset.

    Returns (metrics, test predictions in physical units, timing in seconds).
    """
    idx = {"train": dm.train_idx, "val": dm.val_idx, "test": dm.test_idx}
    x = {s: features(dm, i) for s, i in idx.items()}
    z_train = dm.codec.encode(
        torch.as_tensor(dm.params[dm.train_idx], dtype=torch.float32)
    ).numpy()
    # HistGradientBoosting (OpenMP) and Ridge/KNN (BLAS) would otherwise take every core
    with threadpool_limits(limits=cpu_threads):
        t0 = time.perf_counter()
        try:  # sklearn says what is wrong (bad hyperparameter, too few samples) as a ValueError
            estimator.fit(x["train"], z_train)
            timing = {"fit": time.perf_counter() - t0}
            t0 = time.perf_counter()
            z_pred = {
                s: np.asarray(estimator.predict(x[s]), dtype=np.float32).reshape(len(x[s]), -1)
                for s in STAGES
            }
        except (InvalidParameterError, ValueError) as exc:
            msg = " ".join(str(exc).split())
            raise BaselineConfigError(
                f"baseline={name}: {msg} Fix the baseline.* or data.* override "
                f"(defaults in conf/baseline/{name}.yaml)"
            ) from exc
    results: dict[str, float] = {}
    for s in STAGES:
        results.update(evaluate(dm, z_pred[s], idx[s], s))
    keep = dm.informative_test_mask()  # the neural runs' subset
    if keep is not None:
        results.update(
            {
                k: v
                for k, v in evaluate(
                    dm, z_pred["test"][keep], dm.test_idx[keep], "test_informative"
                ).items()
                if k != "test_informative/loss"
            }
        )
    timing["test"] = time.perf_counter() - t0
    pred = dm.codec.decode(torch.as_tensor(z_pred["test"])).numpy()
    return results, pred, timing


def build_estimator(cfg: DictConfig) -> Any:
    """The scikit-learn estimator of ``cfg.baseline``; a bad hyperparameter is one
    BaselineConfigError line."""
    name = str(cfg.model_name)
    try:
        return instantiate(cfg.baseline, _convert_="all")
    except InstantiationException as exc:
        raise BaselineConfigError(
            f"baseline={name}: {exc.__cause__ or exc}. Fix the baseline.* override "
            f"(defaults in conf/baseline/{name}.yaml)"
        ) from exc


def run_baseline(cfg: DictConfig, reporter: Reporter | None = None) -> dict[str, float]:
    """Fit one baseline, print its summary and metrics table, and leave a FINISHED (or FAILED)
    MLflow run.

    The data and the estimator are checked before the MLflow run exists (bad input leaves no run);
    the run's lifecycle is :func:`astrops.tracking.run_lifecycle`, like a network's.
    """
    from astrops.models.tasks import RegressionTask

    name = str(cfg.model_name)
    if cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    t_start = time.perf_counter()
    dm: SpectraDataModule = instantiate(cfg.data)
    dm.prepare()
    estimator = build_estimator(cfg)
    lg = (cfg.get("logger") or {}).get("mlflow")
    run = tracking.tracked(instantiate(lg) if lg else None, cfg)
    with tracking.run_lifecycle(run, cfg, tracking.run_tags(cfg, dm.lineage(), baseline="true")):
        timing = {"setup": time.perf_counter() - t_start}
        results, pred, t = fit_and_evaluate(estimator, dm, name, cfg.get("cpu_threads"))
        timing.update(t)
        t0 = time.perf_counter()
        n_inf = int(dm.informative_mask(dm.test_idx).sum())
        r2 = {p: results.get(f"test/R2/{p}", float("nan")) for p in dm.parameters}
        r2_inf = {p: results.get(f"test_informative/R2/{p}", float("nan")) for p in dm.parameters}
        print(
            f"{name}: test R² "
            + ", ".join(f"{p} {v:.3f}" for p, v in r2.items())
            + f" | informative ({n_inf}) "
            + ", ".join(f"{p} {v:.3f}" for p, v in r2_inf.items())
            + f" | fit {timing['fit']:.1f} s"
        )
        # the neural runs' report: console table, metrics_table.md, pred-vs-true figure, MLflow
        # artifacts a baseline predicts values, like a regression head
        columns = RegressionTask.table_columns
        outputs = {"pred": pred, "true": dm.params[dm.test_idx]}
        out_dir = Path(cfg.paths.output_dir)
        test = TestReport(
            dm, columns, results, outputs, out_dir, run, stages=("test_informative",)
        )
        report(reporter, test)
        if run is not None:
            timing["artifacts"] = time.perf_counter() - t0
            run.log_results({**results, **{f"time/{k}_s": v for k, v in timing.items()}})
    return results
