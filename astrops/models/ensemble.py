"""Deep ensembles: K members of one configuration, trained from different seeds on the same split,
combined into one predictor (Lakshminarayanan et al. 2017).

The members' task head says how they combine (:meth:`astrops.models.tasks.Task.combine`):
regression and Gaussian members → mixture mean and total variance (mean of the members' variances +
variance of their means; for plain regression the spread alone); classification → averaged class
probabilities. The combined spread is then calibrated on the validation split like a single model
(Kuleshov et al. 2018; Guo et al. 2017). This module sees tensors only; the directory of member
checkpoints and ``manifest.json`` an ensemble lives in on disk are :mod:`astrops.checkpoints`'
business.
"""

from __future__ import annotations

import torch
from torch import nn

from astrops.models.spectrum_model import SpectrumModel


class Ensemble(nn.Module):
    """Members sharing input transform, target codec and task kind; quacks like one SpectrumModel
    for prediction (``transform``, ``task.codec``, ``param_names``, ``predict_physical``)."""

    def __init__(
        self, members: list[SpectrumModel], calibration: dict[str, torch.Tensor] | None = None
    ):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = members[0]
        for m in members[1:]:
            same = (
                m.task.kind == first.task.kind
                and m.param_names == first.param_names
                and all(
                    torch.equal(a, b)
                    for a, b in zip(
                        m.transform.state_dict().values(),
                        first.transform.state_dict().values(),
                        strict=True,
                    )
                )
                and all(
                    torch.equal(getattr(m.task.codec, b), getattr(first.task.codec, b))
                    for b in ("mean", "std", "edges")
                )
            )
            if not same:
                raise ValueError(
                    "ensemble members differ in task, parameters, input scaling or target "
                    "scaling: "
                    "train them with one config and one data.split_seed"
                )
        self.members = nn.ModuleList(members)
        self.kind, self.param_names = first.task.kind, first.param_names
        self.transform, self.task = first.transform, first.task
        self.calibration = {
            k: torch.as_tensor(v, dtype=torch.float32) for k, v in (calibration or {}).items()
        }
        if any(
            v.ndim not in (1, 2) or v.shape[0] != len(self.param_names)
            for v in self.calibration.values()
        ):
            raise ValueError(
                f"calibration factors must have one entry per parameter ({len(self.param_names)})"
            )
        self.task.install_ensemble_calibration(list(self.members), self.calibration)

    @property
    def has_distribution(self) -> bool:
        """A distribution one may sample and check for calibration: the members' own (Gaussian
        heads, flows). A regression ensemble's spread is not one, even variance-scaled: its
        intervals are the wrong shape (calibrated 68 % coverage 0.80 / 0.80 / 0.86 at z = 8,
        docs/accuracy.md), so ``predict`` writes it as ``<p>_std`` only, without intervals or
        samples, and the calibration suite refuses it."""
        return self.task.probabilistic

    @torch.no_grad()
    def raw(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Combined prediction before the ensemble-level calibration."""
        for m in self.members:
            m.eval()
        return self.task.combine([m.predict_physical(delta) for m in self.members])

    @torch.no_grad()
    def predict_physical(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.task.apply_ensemble_calibration(self.raw(delta), self.calibration)

    def calibrate(self, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
        """Fit the ensemble-level calibration on the validation split; returns the factors for
        logging (``calibration/<factor>/<parameter>``), {} when the members' task is configured not
        to calibrate."""
        if not self.task.calibrates_ensemble:
            return {}
        factors = self.task.fit_members_calibration(list(self.members), x_val, y_val)
        if factors is None:
            factors = self.task.fit_ensemble_calibration(self.raw(x_val), y_val)
        self.calibration = factors
        self.task.install_ensemble_calibration(list(self.members), factors)
        return {
            f"calibration/{name}/{p}": float(v)
            for name, t in self.task.calibration_summary(self.calibration).items()
            for p, v in zip(self.param_names, t, strict=True)
        }

    def validation_loss(self, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
        """The ensemble's validation objective in its task's loss units (what sweeps minimise), on
        the calibrated prediction."""
        return self.task.ensemble_loss(self.predict_physical(x_val), y_val)
