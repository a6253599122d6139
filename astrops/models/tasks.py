"""Heads + losses: what the network predicts, how it is scored, calibrated, combined and reported.

A task owns the :class:`TargetCodec` (target scaling and class edges) so its outputs can always be
decoded to physical parameter values. Every ``decode`` returns ``value`` (B, P) in physical units;
the Gaussian task adds ``std``, classification ``class``, ``prob`` and ``probs``. Post-hoc
calibration factors are buffers, so a calibrated model is one checkpoint.

Everything that differs between heads lives on the head (:class:`Task`): its metrics and table
columns, its post-hoc calibration, its differentiable point estimate, how an ensemble of it is
combined, calibrated and scored, and the extra columns ``predict`` writes. Nothing outside
``astrops.models`` asks which kind of head it holds, so a new head is one subclass (registered in
:mod:`astrops.models.registry`) and one ``conf/task/*.yaml``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrops.models.calibration import variance_scale
from astrops.models.transforms import TargetCodec
from astrops.scores import QUANTILE_LEVELS, gaussian_scores, quantile_columns

Columns = tuple[tuple[str, str], ...]
REGRESSION_COLUMNS: Columns = (
    ("RMSE", "RMSE"),
    ("MAE", "MAE"),
    ("MSE", "MSE"),
    ("R2-Score", "R2"),
)
CLASSIFICATION_COLUMNS: Columns = (
    ("Accuracy", "acc"),
    ("Acc ±1", "acc_pm1"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "F1"),
    ("R2 (class centre)", "R2"),
)


class Task(nn.Module):
    """What every head provides. The defaults are those of a head with one continuous value per
    parameter, whose deep ensemble (Lakshminarayanan et al. 2017) is a Gaussian with the members'
    mean and their spread, variance-scaled on the validation split (Kuleshov et al. 2018)."""

    kind: ClassVar[str] = ""
    # its prediction is a distribution of the parameters (a posterior)
    probabilistic: ClassVar[bool] = False
    # (header, metric key) of the seed's metrics table
    table_columns: ClassVar[Columns] = REGRESSION_COLUMNS
    # whether a single model has post-hoc factors to fit on the validation split
    calibrate: bool = False
    codec: TargetCodec
    n_params: int

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (a scalar) of the head's raw output ``out`` (its ``forward`` of the
        backbone's features) against truths ``y`` (B, P) in physical units."""
        raise NotImplementedError

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw output → physical prediction: always ``value`` (B, P); ``std``, ``class``,
        ``probs`` or ``samples`` and quantiles where the head has them."""
        raise NotImplementedError

    def metric_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`astrops.metrics.ParameterMetrics` for this head's
        predictions."""
        return {"n_classes": None, "distribution": False}

    def point_estimate(self, out: torch.Tensor) -> torch.Tensor:
        """Differentiable point estimate (B, P) in physical units (input gradients need one)."""
        return self.decode(out)["value"]

    def fit_calibration(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fit this head's calibration buffers on validation outputs ``out`` and truths ``y``
        (physical units); returns the fitted factors by buffer name (none for a head without a
        spread)."""
        return {}

    def calibration_summary(self, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One number per parameter for each fitted factor, to log
        (``calibration/<name>/<parameter>``)."""
        return factors

    @property
    def calibrates_ensemble(self) -> bool:
        """Whether an ensemble of these heads fits its own factors: heads with a ``calibrate``
        switch follow it; a regression ensemble's spread needs them most (RegressionTask has no
        switch)."""
        return self.calibrate

    # -- deep ensembles ----------------------------------------------------------------------
    def combine(self, decs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One prediction from the members' decoded outputs: mean value, the members' spread as
        std."""
        return mixture(decs, within=None)

    def fit_members_calibration(
        self, members: list[nn.Module], x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor] | None:
        """Ensemble-level factors fitted on the members themselves (a flow's base, shared); None:
        fitted on the combined prediction instead (:meth:`fit_ensemble_calibration`)."""
        return None

    def install_ensemble_calibration(
        self, members: list[nn.Module], factors: dict[str, torch.Tensor]
    ) -> None:
        """Put ensemble-level factors that live in the members into them (none by default)."""

    def fit_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Ensemble-level factors fitted on the combined validation prediction: variance scaling of
        ``std``."""
        return {"var_scale": variance_scale(dec["value"], dec["std"], y)}

    def apply_ensemble_calibration(
        self, dec: dict[str, torch.Tensor], factors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The combined prediction with ensemble-level factors applied (factors of other heads are
        ignored)."""
        out = dict(dec)
        if "var_scale" in factors:
            out["std"] = dec["std"] * factors["var_scale"].to(dec["std"]).sqrt()
        return out

    def ensemble_loss(self, dec: dict[str, torch.Tensor], y: torch.Tensor) -> float:
        """The ensemble's validation objective (what sweeps minimise): the Gaussian NLL of the
        mixture mean and variance in training-std units, summed over parameters like the heads'
        losses; the same number as the metrics' ``NLL/overall`` × P (float64 mean over samples,
        then over parameters)."""
        std = self.codec.std
        nll = gaussian_scores(dec["value"] / std, dec["std"] / std, y / std)["nll"]
        per_param = nll.sum(0).double() / max(len(y), 1)
        return float(per_param.mean()) * self.n_params

    def output_columns(
        self, dec: dict[str, torch.Tensor], parameters: list[str]
    ) -> dict[str, np.ndarray]:
        """Columns ``predict`` writes besides the values: the 1σ of the (calibrated) predictive
        distribution wherever the prediction has one (Gaussian heads, ensembles of continuous
        heads)."""
        if "std" not in dec:
            return {}
        return {
            f"{p}_std": dec["std"][:, j].detach().cpu().numpy().astype(np.float64)
            for j, p in enumerate(parameters)
        }

    def draw(self, dec: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """(B, n, P) samples of the predictive distribution (probabilistic heads only)."""
        raise TypeError(
            f"a {self.kind} model has no posterior to sample (its spread, if any, is not an error "
            "bar): "
            "train task=gaussian or task=flow"
        )


class RegressionTask(Task):
    """One value per parameter, MSE on standardised targets (equal weight per parameter)."""

    kind = "regression"

    def __init__(self, codec: TargetCodec, in_features: int):
        super().__init__()
        self.codec = codec
        self.n_params = codec.mean.numel()
        self.head = nn.Linear(in_features, self.n_params)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, self.codec.encode(y))

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"value": self.codec.decode(out)}

    @property
    def calibrates_ensemble(self) -> bool:
        return True  # the members' spread is the only std an ensemble of these has


class GaussianTask(Task):
    """Mean and log-variance per parameter, trained by the Gaussian negative log-likelihood.

    ``beta`` > 0 weights each sample's NLL by its (detached) predicted variance to the power beta
    (Seitzer et al. 2022, β-NLL): plain NLL (beta 0) lets the network buy low loss on easy samples
    by shrinking their variance while fitting the mean of hard ones poorly; β = 0.5 trades between
    NLL and MSE. ``var_scale`` (P,) is the post-hoc variance calibration fitted on the validation
    split (Kuleshov et al. 2018).
    """

    kind = "gaussian"
    probabilistic = True

    def __init__(
        self,
        codec: TargetCodec,
        in_features: int,
        beta: float = 0.0,
        calibrate: bool = True,
        min_log_var: float = -14.0,
        max_log_var: float = 6.0,
    ):
        super().__init__()
        self.codec, self.beta, self.calibrate = codec, beta, calibrate
        self.n_params = codec.mean.numel()
        self.min_log_var, self.max_log_var = min_log_var, max_log_var
        self.head = nn.Linear(in_features, 2 * self.n_params)
        self.register_buffer("var_scale", torch.ones(self.n_params))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.head(h).view(-1, 2, self.n_params)
        # a soft clamp keeps the variance finite without killing its gradient at the bounds
        lo, hi = self.min_log_var, self.max_log_var
        log_var = lo + (hi - lo) * torch.sigmoid((out[:, 1] - 0.5 * (lo + hi)) * 4.0 / (hi - lo))
        return torch.stack([out[:, 0], log_var], dim=1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mean, log_var = out[:, 0], out[:, 1]
        nll = 0.5 * (
            log_var
            + (self.codec.encode(y) - mean) ** 2 * torch.exp(-log_var)
            + math.log(2 * math.pi)
        )
        if self.beta:
            nll = nll * torch.exp(log_var.detach() * self.beta)
        return nll.mean() * self.n_params  # summed over parameters, like the classification loss

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        std = torch.exp(0.5 * out[:, 1]) * self.var_scale.sqrt() * self.codec.std
        return {"value": self.codec.decode(out[:, 0]), "std": std}

    def metric_options(self) -> dict[str, Any]:
        return {"n_classes": None, "distribution": True}

    def fit_calibration(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``var_scale`` maximising the validation likelihood of the uncalibrated (scale 1)
        Gaussians."""
        self.var_scale.fill_(1.0)
        dec = self.decode(out)
        factors = variance_scale(dec["value"], dec["std"], y)
        self.var_scale.copy_(factors.to(self.var_scale.device))
        return {"var_scale": factors}

    def combine(self, decs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Mixture mean and total variance: the members' own noise (mean of their variances) plus
        what the seeds disagree on (variance of their means)."""
        return mixture(decs, within=torch.stack([d["std"] ** 2 for d in decs]).mean(0))

    def output_columns(
        self, dec: dict[str, torch.Tensor], parameters: list[str]
    ) -> dict[str, np.ndarray]:
        """The std and the Gaussian's quantiles (median = mean; μ ± σ; μ ± 1.96 σ)."""
        normal = torch.distributions.Normal(0.0, 1.0)
        q = {
            name: dec["value"] + dec["std"] * normal.icdf(torch.tensor(level))
            for name, level in QUANTILE_LEVELS.items()
        }
        return {**super().output_columns(dec, parameters), **quantile_columns(q, parameters)}

    def draw(self, dec: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """Independent Gaussians per parameter (the calibrated mean and std; an ensemble's
        moment-matched one)."""
        eps = torch.randn(
            dec["value"].shape[0], n, dec["value"].shape[1], dtype=dec["value"].dtype
        )
        return dec["value"][:, None, :] + dec["std"][:, None, :] * eps.to(dec["value"].device)


def mixture(
    decs: list[dict[str, torch.Tensor]], within: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Mean of the members' values and total std: their spread plus ``within`` (their own
    variance)."""
    values = torch.stack([d["value"] for d in decs])  # (K, B, P)
    var = values.var(0, unbiased=False)  # between members: what the seeds disagree on
    if within is not None:
        var = var + within
    return {"value": values.mean(0), "std": var.sqrt()}
