"""Models see tensors only: transforms, backbones, task heads, the LightningModule that joins them and
the deep ensemble of several of them. Files on disk are :mod:`astrops.checkpoints`' business."""

from astrops.models.backbones import CNNBackbone, DenseBackbone
from astrops.models.ensemble import Ensemble
from astrops.models.estimator import ParameterEstimator
from astrops.models.tasks import ClassificationTask, GaussianTask, RegressionTask, Task
from astrops.models.transforms import SpectrumTransform, TargetCodec

__all__ = ["CNNBackbone", "ClassificationTask", "DenseBackbone", "Ensemble", "GaussianTask", "ParameterEstimator",
           "RegressionTask", "SpectrumTransform", "Task", "TargetCodec"]
