"""21CMMC's Gaussian power-spectrum likelihood, with the emulator's cosmic variance added.

21CMMC's ``Likelihood1DPowerCoeval.computeLikelihood`` (Greig & Mesinger 2015, MNRAS 449, 4246) is,
per redshift and over the k-bins inside [min_k, max_k],

    ln L = −½ Σ (Δ²_model − Δ²_data)² / (σ_noise² + (f·Δ²_model)²),

σ_noise linearly interpolated from the noise file's ``errs`` and f the modelling error (0.15 by
default). The reference here (:class:`PowerSpectrumLikelihood`) adds, in quadrature, the scatter of
Δ² between initial-condition realisations that the emulator predicts (σ_cv²(θ)): a mock is *one*
realisation, as the networks' training spectra were, so its spread about the ensemble mean is part
of the data's variance. The four redshifts and all k-bins of a mock come from one box, so that
scatter is correlated across them: the reference uses the full covariance S R S + diag(σ_noise² +
(f·Δ²)²), R the correlation of the emulator's standardised training residuals
(:meth:`SpectrumEmulator.fit_correlation`; 0.3–0.7 between neighbouring bins and redshifts), not a
diagonal that would count one box's fluctuation several times. Because the covariance depends on θ,
the reference keeps the Gaussian's log-determinant −½ ln det C (21CMMC omits it; its own comment
notes that a model-dependent variance should bring it in). With both switched off it is 21CMMC's
expression term by term (tests/test_reference.py checks 1e-10 against it).

The emulator's own error enters the diagonal as 21CMMC adds 21cmEMU's: σ_emu² = η_z σ_cv²(θ)
(:meth:`SpectrumEmulator.fit_error`), so C = S R S + diag(σ_noise² + (f·Δ²)² + σ_emu²). Two forms
of the covariance are offered: ``theta`` (C(θ) at every point, with its log-determinant) and
``fixed`` (:meth:`PowerSpectrumLikelihood.fixed_at`: C evaluated once at a point estimate θ̂ and
held, so no determinant enters and θ cannot be rewarded for a small emulated scatter);
docs/posteriors.md has the measured choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PowerSpectrumLikelihood:
    """ln L(θ) of one observed spectrum from the emulated mean and cosmic variance at θ.

    ``data`` and ``noise`` (n_z, n_bins): the observed Δ² and its 1σ thermal noise [mK²] on the
    measured bins; ``model_error`` is 21CMMC's f; ``cosmic_variance`` and ``log_det`` switch the
    reference's two additions (both on for the reference; both off is 21CMMC's form).
    """

    data: torch.Tensor
    noise: torch.Tensor
    model_error: float = 0.0
    cosmic_variance: bool = True
    log_det: bool = True
    # (n_z·n_bins)²: the cosmic variance's correlation across redshifts and k
    corr: torch.Tensor | None = None
    # (n_z, n_bins) η: the emulator's error variance in units of σ_cv² (None: no emulator error)
    emulator_scale: torch.Tensor | None = None

    def diagonal(self, mean: torch.Tensor, cv_var: torch.Tensor | None) -> torch.Tensor:
        """σ_noise² + (f·Δ²)² + σ_emu², (B, n_z, n_bins)."""
        var = self.noise**2 + (self.model_error * mean) ** 2
        if self.emulator_scale is not None and cv_var is not None:
            var = var + self.emulator_scale * cv_var
        return var

    def fixed_at(self, mean: torch.Tensor, cv_var: torch.Tensor) -> FixedCovariance:
        """The likelihood with C held at one point's emulated mean and variance (n_z, n_bins)."""
        var = self.diagonal(mean, cv_var).flatten().double()
        cov = torch.diag(var)
        if self.cosmic_variance:
            s = cv_var.flatten().double().sqrt()
            corr = torch.eye(len(s), dtype=s.dtype) if self.corr is None else self.corr.double()
            cov = cov + s[:, None] * corr * s[None, :]
        return FixedCovariance(self.data.flatten().double(), torch.linalg.cholesky(cov))

    def __call__(self, mean: torch.Tensor, cv_var: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) ln L for emulated ``mean`` and ``cv_var`` (B, n_z, n_bins), up to a θ-independent
        constant."""
        var = self.diagonal(mean, cv_var)
        if self.cosmic_variance:
            if cv_var is None:
                raise ValueError("cosmic_variance=True needs the emulated cosmic variance")
            if self.corr is not None:
                return self._correlated(mean, var, cv_var)
            var = var + cv_var
        lnl = -0.5 * ((mean - self.data) ** 2 / var).sum((-1, -2))
        if self.log_det:
            lnl = lnl - 0.5 * torch.log(var).sum((-1, -2))
        return lnl

    def _correlated(
        self, mean: torch.Tensor, var: torch.Tensor, cv_var: torch.Tensor, chunk: int = 1024
    ) -> torch.Tensor:
        """Full covariance C = S R S + diag(σ_noise² + (f·Δ²)²), S = diag(σ_cv): a Cholesky factor
        per point, in chunks, in float32 (twice as fast as float64; ln L to ~1e-4, far below the
        0.01 differences that matter)."""
        out = []
        corr = self.corr.float()
        for m, v, c in zip(mean.split(chunk), var.split(chunk), cv_var.split(chunk), strict=True):
            s = c.flatten(1).float().sqrt()
            cov = s[:, :, None] * corr * s[:, None, :] + torch.diag_embed(v.flatten(1).float())
            chol = torch.linalg.cholesky(cov)
            r = (m - self.data).flatten(1).float()[:, :, None]
            w = torch.linalg.solve_triangular(chol, r, upper=False)
            lnl = -0.5 * (w.double() ** 2).sum((1, 2))
            if self.log_det:
                lnl = lnl - torch.log(torch.diagonal(chol, dim1=1, dim2=2).double()).sum(1)
            out.append(lnl)
        return torch.cat(out)


@dataclass
class FixedCovariance:
    """ln L(θ) = −½ rᵀ C⁻¹ r, r = Δ²_model(θ) − Δ²_data, for one held Cholesky factor of C."""

    data: torch.Tensor  # (D,)
    chol: torch.Tensor  # (D, D) lower

    def __call__(self, mean: torch.Tensor, cv_var: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) ln L for emulated means (B, n_z, n_bins); the variance argument is ignored."""
        r = (mean.flatten(1).double() - self.data).T  # (D, B)
        w = torch.linalg.solve_triangular(self.chol, r, upper=False)
        return -0.5 * (w**2).sum(0)
