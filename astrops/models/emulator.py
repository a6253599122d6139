"""The simulator's inverse direction: θ → the mean Δ²(k, z) and its cosmic-variance scatter.

An explicit likelihood needs the model power spectrum at any θ; a 21cmFAST run per likelihood call
would cost ~10⁵ simulations per posterior. Following Schmit & Pritchard (2018, MNRAS 475, 1213),
who emulated these three parameters with a neural network, a dense network maps θ (scaled to the
prior box) to a Gaussian per (z, k) bin: its mean is the ensemble-average spectrum and its variance
the scatter between initial-condition realisations (cosmic variance), both learned from one
realisation per θ by the Gaussian negative log-likelihood (``beta`` > 0: β-NLL, Seitzer et al.
2022; the plain NLL fitted better, conf/task/emulator.yaml).

Δ² is emulated linearly (standardised per bin), not in log: fully ionized boxes have Δ² = 0 and the
likelihood is Gaussian in Δ² itself, so its mean and variance are needed in mK², not a log's.
Everything the emulator needs to be applied travels as buffers: ``torch.load(weights_only=True)``
suffices.
"""

from __future__ import annotations

import pickle
from typing import Any

import lightning as L
import torch
from torch import nn

from astrops.models.backbones import DenseBackbone

FORMATS = ("astrops-emulator/1", "astrops-emulator/2")  # /2: with the emulator-error term


class SpectrumEmulator(L.LightningModule):
    """θ (B, P) in physical units → mean and variance of Δ² (B, n_z, n_k) in mK² on the emulated
    bins."""

    def __init__(
        self,
        parameters: list[str],
        prior_box: list[list[float]],
        k: list[float],
        redshifts: list[float],
        bins: list[int],
        hidden: tuple[int, ...] = (256, 256, 256),
        beta: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.param_names, self.k, self.redshifts = list(parameters), list(k), list(redshifts)
        n_out = len(redshifts) * len(bins)
        self.backbone = DenseBackbone((1, len(parameters)), hidden=list(hidden), activation="silu")
        self.head = nn.Linear(self.backbone.out_features, 2 * n_out)
        self.register_buffer("box", torch.tensor(prior_box, dtype=torch.float32))  # (P, 2)
        self.register_buffer("bins", torch.tensor(bins, dtype=torch.long))
        # Δ² standardisation (training split)
        self.register_buffer("mean", torch.zeros(len(redshifts), len(bins)))
        self.register_buffer("std", torch.ones(len(redshifts), len(bins)))
        # correlation of the scatter between all (z, k) outputs: one box gives every redshift and
        # k-bin of a spectrum, so their cosmic variance is shared (estimated after training:
        # fit_correlation)
        self.register_buffer("corr", torch.eye(n_out))
        # the emulator's own error: σ_emu² = error_scale · σ_cv², per (z, k), from out-of-sample
        # residuals (fit_error); zero until fitted
        self.register_buffer("error_scale", torch.zeros(len(redshifts), len(bins)))
        self.error_fitted = False  # files of the first format carry no error term
        self.beta, self.lr, self.weight_decay = beta, lr, weight_decay

    def fit_scaling(self, delta_train: torch.Tensor) -> None:
        """Per-bin standardisation from the training split's Δ² (N, n_z, n_bins)."""
        self.mean.copy_(delta_train.mean(0))
        self.std.copy_(delta_train.std(0).clamp_min(1e-8))

    def fit_correlation(self, theta: torch.Tensor, delta: torch.Tensor) -> None:
        """The correlation matrix (n_z·n_bins)² of the standardised residuals (Δ² − mean) / σ_cv on
        the training split: the cosmic variance's coupling across redshifts and k-bins, which a
        per-bin σ lacks."""
        with torch.no_grad():
            mean, var = self(theta)
        r = ((delta - mean) / var.sqrt()).reshape(len(delta), -1).double()
        self.corr.copy_(torch.corrcoef(r.T).float())

    def fit_error(self, theta: torch.Tensor, delta: torch.Tensor) -> None:
        """The emulator's own error from spectra its weights never saw: σ_emu² = η_z · σ_cv²(θ).

        A residual r = Δ² − mean(θ) holds the cosmic variance and the emulator's miss, so the
        excess of the standardised residuals, η = ⟨r² / σ_cv²⟩ − 1 (≥ 0), is the miss in units of
        the scatter — which follows the signal (a fully ionized box is emulated as 0 ± 0). On the
        reference store η is 0.1–0.6 in every (z, k) bin with a median r²/σ_cv² near nominal:
        heavy tails, not a wrong core. One η per redshift (pooled over k): per-bin estimates from a
        few hundred spectra scatter by ±0.1–0.3.

        References:
            Breitman et al. (2024), MNRAS 527, 9833 (21cmEMU: the error from test residuals, added
            in quadrature in 21CMMC's likelihood)."""
        with torch.no_grad():
            mean, var = self(theta)
        z2 = ((delta - mean) ** 2 / var).double().mean((0, 2))  # (n_z,)
        self.error_scale.copy_((z2 - 1).clamp_min(0)[:, None].expand_as(self.error_scale))
        self.error_fitted = True

    def error_var(self, cv_var: torch.Tensor) -> torch.Tensor:
        """σ_emu² (B, n_z, n_bins) given the emulated cosmic variance at the same θ."""
        return self.error_scale * cv_var

    def _raw(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = 2 * (theta - self.box[:, 0]) / (self.box[:, 1] - self.box[:, 0]) - 1
        out = self.head(self.backbone(u[:, None, :]))
        mu, log_var = out.chunk(2, dim=-1)
        shape = (len(theta), *self.mean.shape)
        return mu.reshape(shape), log_var.reshape(shape).clamp(-18, 12)

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean Δ² and its cosmic variance (B, n_z, n_bins), mK² and mK⁴."""
        mu, log_var = self._raw(theta)
        return self.mean + self.std * mu, self.std**2 * log_var.exp()

    def loss(
        self, theta: torch.Tensor, delta: torch.Tensor, beta: float | None = None
    ) -> torch.Tensor:
        """Mean Gaussian NLL per bin of standardised Δ² (β-NLL with ``self.beta`` unless ``beta``
        is given)."""
        beta = self.beta if beta is None else beta
        mu, log_var = self._raw(theta)
        z = (delta - self.mean) / self.std
        nll = 0.5 * ((z - mu) ** 2 / log_var.exp() + log_var)
        if beta:  # β-NLL: weight each bin by its (detached) variance^β
            nll = nll * log_var.detach().exp() ** beta
        return nll.mean()

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        loss = self.loss(*batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log(
            "val/loss",
            self.loss(*batch),
            on_step=False,
            on_epoch=True,
            batch_size=len(batch[0]),
            prog_bar=True,
        )

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}


def emulator_scores(
    model: SpectrumEmulator, theta: torch.Tensor, delta: torch.Tensor
) -> dict[str, float]:
    """Held-out checks of both outputs, per redshift: R² of the mean (against single realisations,
    so bounded by the cosmic variance itself) and the fraction of realisations inside the emulated
    ±1σ / ±2σ (0.68 / 0.95 when the variance is right and the scatter Gaussian)."""
    with torch.no_grad():
        mean, var = model(theta)
    z = (delta - mean) / var.sqrt()
    out = {}
    for i, zz in enumerate(model.redshifts):
        resid = ((delta[:, i] - mean[:, i]) ** 2).sum(0)
        total = ((delta[:, i] - delta[:, i].mean(0)) ** 2).sum(0).clamp_min(1e-30)
        out[f"test/R2_mean/z{zz:g}"] = float((1 - resid / total).mean())
        out[f"test/within1sigma/z{zz:g}"] = float((z[:, i].abs() <= 1).float().mean())
        out[f"test/within2sigma/z{zz:g}"] = float((z[:, i].abs() <= 2).float().mean())
    return out


def load_emulator(path: str) -> SpectrumEmulator:
    """An emulator from its file: plain hyperparameters and tensors only (``weights_only=True``;
    nothing read from disk names code to run)."""
    refusal = (
        f"{path} is not an astrops emulator (train one with python train.py experiment=emulator)"
    )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    # torch's own text would advise unsafe loading
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError):
        raise ValueError(refusal) from None
    if not isinstance(blob, dict) or blob.get("format") not in FORMATS:
        raise ValueError(refusal)
    try:
        hp = blob["hparams"]
        model = SpectrumEmulator(
            hp["parameters"],
            hp["prior_box"],
            hp["k"],
            hp["redshifts"],
            hp["bins"],
            tuple(int(h) for h in hp["hidden"]),
        )
        state = dict(blob["state_dict"])
        if blob["format"] == "astrops-emulator/1":  # before the error term: none
            state.setdefault("error_scale", torch.zeros_like(model.error_scale))
        model.load_state_dict(state)
        model.error_fitted = blob["format"] != FORMATS[0]
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(
            f"{path} is a damaged astrops emulator ({type(exc).__name__}: {exc}): retrain it"
        ) from None
    return model.eval()


def save_emulator(model: SpectrumEmulator, path: str, lineage: dict[str, Any]) -> None:
    hp = {
        k: model.hparams[k]
        for k in ("parameters", "prior_box", "k", "redshifts", "bins", "hidden")
    }
    hp["hidden"] = list(hp["hidden"])
    torch.save(
        {
            "format": FORMATS[-1],
            "hparams": hp,
            "state_dict": model.state_dict(),
            "lineage": lineage,
        },
        path,
    )
