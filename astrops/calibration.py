"""Post-hoc calibration on the validation split: variance scaling (Gaussian heads, ensembles) and
temperature scaling (class probabilities).

Both fit one number per parameter by maximum likelihood on held-out data the network never trained
on (Kuleshov et al. 2018; Guo et al. 2017): the predictions keep their ranking and their means, only
their stated confidence is corrected. A single model keeps the factors as buffers of its task head
(one checkpoint); an ensemble keeps them in its manifest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from astrops.models.transforms import TargetCodec


def variance_scale(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-parameter factor s on the variance maximising the Gaussian likelihood: s = mean(((y-μ)/σ)²)."""
    return (((target - mean) / std.clamp_min(1e-12)) ** 2).mean(0)


def temperature(log_probs: torch.Tensor, target_class: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """Per-parameter temperature T minimising the cross-entropy of softmax(log_probs / T); (B, P, C) → (P,)."""
    log_t = torch.zeros(log_probs.shape[1], dtype=torch.float64, requires_grad=True)
    lp, tc = log_probs.detach().double(), target_class.detach()
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        scaled = lp / log_t.exp()[None, :, None]
        loss = sum(F.cross_entropy(scaled[:, j], tc[:, j]) for j in range(lp.shape[1]))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return log_t.detach().exp().float()


def fit(dec: dict[str, torch.Tensor], target: torch.Tensor, codec: TargetCodec) -> dict[str, torch.Tensor]:
    """Calibration factors for decoded predictions: ``var_scale`` for a std, ``temperature`` for probabilities."""
    if "std" in dec:
        return {"var_scale": variance_scale(dec["value"], dec["std"], target)}
    if "probs" in dec:
        return {"temperature": temperature(dec["probs"].clamp_min(1e-12).log(), codec.to_class(target))}
    return {}


def calibrate_model(model, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
    """Fit the task head's calibration buffers on (x_val, y_val); returns the factors for logging."""
    task = model.task
    name = "var_scale" if hasattr(task, "var_scale") else "temperature" if hasattr(task, "temperature") else None
    if name is None:
        return {}
    getattr(task, name).fill_(1.0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x_val)
    model.train(was_training)
    if name == "temperature":  # fitted on the logits it will divide (no clamped log-probabilities)
        factors = temperature(out.log_softmax(-1), task.codec.to_class(y_val))
    else:
        factors = fit(task.decode(out), y_val, task.codec)[name]
    getattr(task, name).copy_(factors.to(getattr(task, name).device))
    return {f"calibration/{name}/{p}": float(v) for p, v in zip(model.param_names, factors, strict=True)}
