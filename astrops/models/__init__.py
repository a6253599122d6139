"""Models see tensors only: transforms, backbones, task heads, the plain module that joins them
(:class:`SpectrumModel`, what applying a model builds), the LightningModule that trains it
(:class:`ParameterEstimator`) and the deep ensemble of several of them. Files on disk are
:mod:`astrops.checkpoints`' business.

``ParameterEstimator`` is imported on first use: applying a model never loads Lightning or
torchmetrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from astrops.models.backbones import CNNBackbone, DenseBackbone
from astrops.models.classification import ClassificationTask
from astrops.models.ensemble import Ensemble
from astrops.models.flow import FlowTask
from astrops.models.spectrum_model import SpectrumModel
from astrops.models.tasks import GaussianTask, RegressionTask, Task
from astrops.models.transforms import SpectrumTransform, TargetCodec

if TYPE_CHECKING:
    from astrops.models.estimator import ParameterEstimator

__all__ = [
    "CNNBackbone",
    "ClassificationTask",
    "DenseBackbone",
    "Ensemble",
    "FlowTask",
    "GaussianTask",
    "ParameterEstimator",
    "RegressionTask",
    "SpectrumModel",
    "SpectrumTransform",
    "Task",
    "TargetCodec",
]


def __getattr__(name: str) -> Any:
    if name == "ParameterEstimator":  # Lightning + torchmetrics: for training only
        from astrops.models.estimator import ParameterEstimator

        globals()[name] = ParameterEstimator
        return ParameterEstimator
    raise AttributeError(f"module 'astrops.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
