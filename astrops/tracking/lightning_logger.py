"""Lightning's MLflow logger, passing on only the per-epoch curves
(:data:`astrops.tracking.summary.PER_EPOCH`).

The estimator computes every metric of every stage (early stopping, checkpointing and the report
need them); what reaches MLflow is decided in one place, :mod:`astrops.tracking.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import MLFlowLogger

from astrops.tracking.summary import is_per_epoch


class CurvesMLFlowLogger(MLFlowLogger):
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        kept = {k: v for k, v in metrics.items() if is_per_epoch(k)}
        if kept:
            super().log_metrics(kept, step)
