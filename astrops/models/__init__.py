"""Models see tensors only: transforms, backbones, task heads and the LightningModule that joins them."""

from astrops.models.backbones import CNNBackbone, DenseBackbone
from astrops.models.estimator import ParameterEstimator
from astrops.models.tasks import ClassificationTask, GaussianTask, RegressionTask
from astrops.models.transforms import SpectrumTransform, TargetCodec

__all__ = ["CNNBackbone", "ClassificationTask", "DenseBackbone", "GaussianTask", "ParameterEstimator", "RegressionTask",
           "SpectrumTransform", "TargetCodec"]
