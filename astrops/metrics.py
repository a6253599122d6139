"""Per-parameter metrics in physical units, keyed ``{stage}/{metric}/{parameter}``.

torchmetrics does the work (and the DDP synchronisation); this module only arranges the metrics
per parameter and adds the one torchmetrics lacks: accuracy within ±1 class (classes are ordered).
Overall figures (parameter ``overall``) are means over parameters of R², of accuracies, and of
errors in units of each parameter's training standard deviation, never sums across units.

Predictive distributions (Gaussian heads, ensembles) add coverage68/95 (fraction of truths inside
the central 68/95 % interval), NLL (in units of the training std, so parameters compare) and CRPS
(physical units, like MAE; Gneiting & Raftery 2007 closed form); posterior samples (flows) add the
coverage of their own quantile intervals and the sample CRPS; classification adds ECE.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection, R2Score
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from astrops.scores import gaussian_scores, sample_crps

REGRESSION_METRICS = ("MAE", "RMSE", "MSE", "R2")
CLASSIFICATION_METRICS = ("acc", "acc_pm1", "precision", "recall", "F1", "ECE")
DISTRIBUTION_METRICS = ("coverage68", "coverage95", "NLL", "CRPS")


class GaussianScores(Metric):
    """Coverage of the 68/95 % intervals, mean NLL and mean CRPS per parameter."""

    full_state_update = False

    def __init__(self, n_params: int, **kwargs):
        super().__init__(**kwargs)
        for name in ("in68", "in95", "nll", "crps"):
            self.add_state(
                name, default=torch.zeros(n_params, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(
        self, mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor, target_std: torch.Tensor
    ) -> None:
        # NLL in units of the training std: independent of the parameter's units, comparable across
        # them
        s = gaussian_scores(mean / target_std, std / target_std, target / target_std)
        # CRPS scales with the units: back to physical units, like MAE
        crps = s["crps"] * target_std
        self.in68 += s["in68"].sum(0).double()
        self.in95 += s["in95"].sum(0).double()
        self.nll += s["nll"].sum(0).double()
        self.crps += crps.sum(0).double()
        self.total += len(target)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.clamp(min=1)
        return {
            "coverage68": self.in68 / n,
            "coverage95": self.in95 / n,
            "NLL": self.nll / n,
            "CRPS": self.crps / n,
        }


class SampleScores(Metric):
    """Coverage of the central 68/95 % intervals from a posterior's own quantiles and the sample
    CRPS per parameter (flows: a Gaussian's closed forms would misstate a one-sided or bimodal
    posterior)."""

    full_state_update = False

    def __init__(self, n_params: int, **kwargs):
        super().__init__(**kwargs)
        for name in ("in68", "in95", "crps"):
            self.add_state(
                name, default=torch.zeros(n_params, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, dec: dict[str, torch.Tensor], target: torch.Tensor) -> None:
        self.in68 += ((target >= dec["lo68"]) & (target <= dec["hi68"])).sum(0).double()
        self.in95 += ((target >= dec["lo95"]) & (target <= dec["hi95"])).sum(0).double()
        self.crps += sample_crps(dec["samples"], target).sum(0).double()
        self.total += len(target)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.clamp(min=1)
        return {"coverage68": self.in68 / n, "coverage95": self.in95 / n, "CRPS": self.crps / n}


class WithinOneClassAccuracy(Metric):
    """Fraction of predictions at most one class away from the truth."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("hits", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:  # probabilities
            preds = preds.argmax(-1)
        self.hits += ((preds - target).abs() <= 1).sum()
        self.total += target.numel()

    def compute(self) -> torch.Tensor:
        return self.hits / self.total.clamp(min=1)


def _regression(p: int) -> MetricCollection:
    return MetricCollection(
        {
            "MAE": MeanAbsoluteError(num_outputs=p),
            "MSE": MeanSquaredError(num_outputs=p),
            "RMSE": MeanSquaredError(num_outputs=p, squared=False),
            "R2": R2Score(multioutput="raw_values"),
        }
    )


def _classification(n_classes: int) -> MetricCollection:
    kw = {"num_classes": n_classes}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(average="micro", **kw),
            "acc_pm1": WithinOneClassAccuracy(),
            "precision": MulticlassPrecision(average="macro", **kw),
            "recall": MulticlassRecall(average="macro", **kw),
            "F1": MulticlassF1Score(average="macro", **kw),
            "ECE": MulticlassCalibrationError(n_bins=15, norm="l1", **kw),
        }
    )


class ParameterMetrics(nn.Module):
    """All metrics of one stage. Regression metrics are computed for every task (for
    classification, on the centre of the predicted class) so regression and classification runs
    compare on R²."""

    def __init__(
        self,
        parameters: list[str],
        n_classes: int | None = None,
        confusion: bool = False,
        distribution: bool | str = False,
    ):
        super().__init__()
        self.parameters = list(parameters)
        self.regression = _regression(len(parameters))
        # True: Gaussian predictions (value ± std); "samples": posterior samples and their
        # quantiles (flows)
        self.distribution = (
            SampleScores(len(parameters))
            if distribution == "samples"
            else GaussianScores(len(parameters))
            if distribution
            else None
        )
        self.n_classes = n_classes
        self.classification = (
            nn.ModuleList([_classification(n_classes) for _ in parameters]) if n_classes else None
        )
        self.confusion = (
            nn.ModuleList(
                [MulticlassConfusionMatrix(n_classes, normalize="true") for _ in parameters]
            )
            if n_classes and confusion
            else None
        )

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        pred_class: torch.Tensor | None = None,
        target_class: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        target_std: torch.Tensor | None = None,
    ) -> None:
        """``pred``/``target``/``std`` in physical units (B, P); classes (B, P) and probs (B, P, C)
        for classification; ``target_std`` (P,) the training std NLL is expressed in."""
        self.regression.update(pred, target)
        if self.distribution is not None and std is not None:
            self.distribution.update(
                pred,
                std,
                target,
                target_std if target_std is not None else torch.ones_like(std[0]),
            )
        if self.classification is not None:
            # hard predictions: one-hot probabilities (ECE then measures over-confidence)
            if probs is None:
                probs = torch.nn.functional.one_hot(pred_class, self.n_classes).float()
            for j, coll in enumerate(self.classification):
                coll.update(probs[:, j], target_class[:, j])
                if self.confusion is not None:
                    self.confusion[j].update(pred_class[:, j], target_class[:, j])

    def update_decoded(self, dec: dict[str, torch.Tensor], target: torch.Tensor, codec) -> None:
        """Update from a task's ``decode`` output (value, and std / class / probs where the task
        has them)."""
        cls = dec.get("class")
        samples = isinstance(self.distribution, SampleScores)
        self.update(
            dec["value"],
            target,
            cls,
            codec.to_class(target) if cls is not None else None,
            probs=dec.get("probs"),
            std=None if samples else dec.get("std"),
            target_std=codec.std,
        )
        if samples and "samples" in dec:
            self.distribution.update(dec, target)

    def compute(self, stage: str, target_std: torch.Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        reg = self.regression.compute()
        scale = {
            "MAE": target_std,
            "RMSE": target_std,
            "MSE": target_std**2,
            "R2": torch.ones_like(target_std),
        }
        for name in REGRESSION_METRICS:
            vals = reg[name].reshape(-1)
            for j, p in enumerate(self.parameters):
                out[f"{stage}/{name}/{p}"] = float(vals[j])
            out[f"{stage}/{name}/overall"] = float((vals / scale[name].to(vals.device)).mean())
        if self.distribution is not None and self.distribution.update_called:
            for name, vals in self.distribution.compute().items():
                for j, p in enumerate(self.parameters):
                    out[f"{stage}/{name}/{p}"] = float(vals[j])
                unit = (
                    target_std.to(vals.device).double()
                    if name == "CRPS"
                    else torch.ones_like(vals)
                )
                out[f"{stage}/{name}/overall"] = float((vals / unit).mean())
        if self.classification is not None:
            per = [coll.compute() for coll in self.classification]
            for name in CLASSIFICATION_METRICS:
                vals = [float(d[name]) for d in per]
                out.update(
                    {f"{stage}/{name}/{p}": v for p, v in zip(self.parameters, vals, strict=True)}
                )
                out[f"{stage}/{name}/overall"] = sum(vals) / len(vals)
        return out

    def confusion_matrices(self) -> list[torch.Tensor]:
        return [m.compute() for m in self.confusion] if self.confusion is not None else []

    def reset(self) -> None:
        self.regression.reset()
        if self.distribution is not None:
            self.distribution.reset()
        for group in (self.classification, self.confusion):
            for m in group or []:
                m.reset()


def score(
    dec: dict[str, torch.Tensor],
    target: torch.Tensor,
    codec,
    parameters: list[str],
    prefix: str,
    n_classes: int | None = None,
) -> dict[str, float]:
    """All metrics of decoded predictions at once (ensembles, subsets): keys
    ``{prefix}/{metric}/{param}``."""
    metrics = ParameterMetrics(
        parameters,
        n_classes if "probs" in dec else None,
        distribution="samples" if "samples" in dec else "std" in dec,
    ).to(target.device)
    metrics.update_decoded(dec, target, codec)
    return metrics.compute(prefix, codec.std)
