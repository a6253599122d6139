"""The model as it is applied: input transform → backbone → task head, a plain ``torch.nn.Module``.

Applying a model needs nothing else, so everything that only reads a model — ``predict.py``,
``astrops.load_model``, ensemble members, the MLflow Model — builds this class and never imports
Lightning, MLflow or torchmetrics. :class:`astrops.models.estimator.ParameterEstimator` (the
LightningModule that trains it) is a subclass: it adds the loss, metrics and optimiser and nothing
to the state dict, so both have the same keys (``transform.*``, ``backbone.*``, ``task.*``) and
every checkpoint loads into either.
"""

from __future__ import annotations

import torch
from torch import nn

from astrops.models.tasks import Task
from astrops.models.transforms import SpectrumTransform


class SpectrumModel(nn.Module):
    """Maps raw spectra (B, n_z, n_k) in mK² to reionization parameters.

    ``meta`` is the plain-typed description a checkpoint carries under ``astrops`` (configs of the
    parts, parameter names, k grid, redshifts, lineage); ``param_names`` the order of the outputs.
    """

    def __init__(
        self,
        backbone: nn.Module,
        task: Task,
        transform: SpectrumTransform,
        parameters: list[str],
        meta: dict | None = None,
    ):
        super().__init__()
        self.transform, self.backbone, self.task = transform, backbone, task
        self.param_names = list(parameters)
        # plain-typed description saved in checkpoints (configs, lineage, k grid)
        self.meta = meta or {}

    @property
    def has_distribution(self) -> bool:
        """Whether the prediction is a distribution one may sample and calibrate-check (a
        Gaussian head, a flow); a single regression or classification head is not."""
        return self.task.probabilistic

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        """The task head's raw output (B, ...) for spectra (B, n_z, n_k)."""
        return self.task(self.backbone(self.transform(delta)))

    @torch.no_grad()
    def predict_physical(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoded prediction in physical units: ``value`` (B, P) and the task's extras (std,
        probs)."""
        return self.task.decode(self(delta))

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (the input transform always holds buffers)."""
        for t in self.transform.buffers():
            return t.device
        return torch.device("cpu")
