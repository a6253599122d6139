"""Post-hoc calibration on the validation split: variance scaling (Gaussian heads, ensembles) and
temperature scaling (class probabilities).

Both fit one number per parameter by maximum likelihood on held-out data the network never trained
on (Kuleshov et al. 2018; Guo et al. 2017): the predictions keep their ranking and their means,
only their stated confidence is corrected. Which of the two applies is the task's business
(:meth:`astrops.models.tasks.Task.fit_calibration`, ``fit_ensemble_calibration``): a single model
keeps the factors as buffers of its task head (one checkpoint); an ensemble keeps them in its
manifest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def variance_scale(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-parameter factor s on the variance maximising the Gaussian likelihood: s =
    mean(((y-μ)/σ)²)."""
    return (((target - mean) / std.clamp_min(1e-12)) ** 2).mean(0)


def temperature(
    log_probs: torch.Tensor, target_class: torch.Tensor, steps: int = 100
) -> torch.Tensor:
    """Per-parameter temperature T minimising the cross-entropy of softmax(log_probs / T); (B, P,
    C) → (P,)."""
    log_t = torch.zeros(log_probs.shape[1], dtype=torch.float64, requires_grad=True)
    lp, tc = log_probs.detach().double(), target_class.detach()
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        scaled = lp / log_t.exp()[None, :, None]
        loss = sum(F.cross_entropy(scaled[:, j], tc[:, j]) for j in range(lp.shape[1]))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return log_t.detach().exp().float()
