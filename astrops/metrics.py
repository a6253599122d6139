"""Per-parameter metrics in physical units, keyed ``{stage}/{metric}/{parameter}``.

torchmetrics does the work (and the DDP synchronisation); this module only arranges the metrics
per parameter and adds the one torchmetrics lacks: accuracy within ±1 class (classes are ordered).
Overall figures (parameter ``overall``) are means over parameters of R², of accuracies, and of
errors in units of each parameter's training standard deviation, never sums across units.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection, R2Score
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

REGRESSION_METRICS = ("MAE", "RMSE", "MSE", "R2")
CLASSIFICATION_METRICS = ("acc", "acc_pm1", "precision", "recall", "F1")


class WithinOneClassAccuracy(Metric):
    """Fraction of predictions at most one class away from the truth."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("hits", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.hits += ((preds - target).abs() <= 1).sum()
        self.total += target.numel()

    def compute(self) -> torch.Tensor:
        return self.hits / self.total.clamp(min=1)


def _regression(p: int) -> MetricCollection:
    return MetricCollection({"MAE": MeanAbsoluteError(num_outputs=p), "MSE": MeanSquaredError(num_outputs=p),
                             "RMSE": MeanSquaredError(num_outputs=p, squared=False),
                             "R2": R2Score(multioutput="raw_values")})


def _classification(n_classes: int) -> MetricCollection:
    kw = {"num_classes": n_classes}
    return MetricCollection({"acc": MulticlassAccuracy(average="micro", **kw), "acc_pm1": WithinOneClassAccuracy(),
                             "precision": MulticlassPrecision(average="macro", **kw),
                             "recall": MulticlassRecall(average="macro", **kw),
                             "F1": MulticlassF1Score(average="macro", **kw)})


class ParameterMetrics(nn.Module):
    """All metrics of one stage. Regression metrics are computed for every task (for classification,
    on the centre of the predicted class) so regression and classification runs compare on R²."""

    def __init__(self, parameters: list[str], n_classes: int | None = None, confusion: bool = False):
        super().__init__()
        self.parameters = list(parameters)
        self.regression = _regression(len(parameters))
        self.classification = (nn.ModuleList([_classification(n_classes) for _ in parameters])
                               if n_classes else None)
        self.confusion = (nn.ModuleList([MulticlassConfusionMatrix(n_classes, normalize="true") for _ in parameters])
                          if n_classes and confusion else None)

    def update(self, pred: torch.Tensor, target: torch.Tensor, pred_class: torch.Tensor | None = None,
               target_class: torch.Tensor | None = None) -> None:
        """``pred``/``target`` in physical units (B, P); classes (B, P) for classification."""
        self.regression.update(pred, target)
        if self.classification is not None:
            for j, coll in enumerate(self.classification):
                coll.update(pred_class[:, j], target_class[:, j])
                if self.confusion is not None:
                    self.confusion[j].update(pred_class[:, j], target_class[:, j])

    def compute(self, stage: str, target_std: torch.Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        reg = self.regression.compute()
        scale = {"MAE": target_std, "RMSE": target_std, "MSE": target_std**2, "R2": torch.ones_like(target_std)}
        for name in REGRESSION_METRICS:
            vals = reg[name].reshape(-1)
            for j, p in enumerate(self.parameters):
                out[f"{stage}/{name}/{p}"] = float(vals[j])
            out[f"{stage}/{name}/overall"] = float((vals / scale[name].to(vals.device)).mean())
        if self.classification is not None:
            per = [coll.compute() for coll in self.classification]
            for name in CLASSIFICATION_METRICS:
                vals = [float(d[name]) for d in per]
                out.update({f"{stage}/{name}/{p}": v for p, v in zip(self.parameters, vals, strict=True)})
                out[f"{stage}/{name}/overall"] = sum(vals) / len(vals)
        return out

    def confusion_matrices(self) -> list[torch.Tensor]:
        return [m.compute() for m in self.confusion] if self.confusion is not None else []

    def reset(self) -> None:
        self.regression.reset()
        for group in (self.classification, self.confusion):
            for m in group or []:
                m.reset()
