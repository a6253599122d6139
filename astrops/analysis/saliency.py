"""Which k-scales and redshifts each inferred parameter relies on: two complementary saliency maps.

* Input gradients: mean |∂θ_p/∂x| over spectra, θ_p in units of its training std and x the
  standardised (log) feature. Local and cheap; says how sensitive the estimate is to each feature
  around the data, but can credit features whose variation the data never actually exercise.
* Permutation importance: drop in test R² per parameter when one (z, k) column is shuffled across
  spectra. Global and model-agnostic; says how much the accuracy needs that feature, but splits the
  credit between correlated features (adjacent k-bins, neighbouring redshifts), so both are shown.

Both are (P, n_z, n_kept) arrays over the model's kept k-bins; ``compute_saliency`` returns a
figure and a plain-typed table for a run's ``log_figures`` / ``log_dict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from astrops.parameters import LABELS
from astrops.plotting import plt

if TYPE_CHECKING:
    from astrops.models import ParameterEstimator


def _as_input(model: ParameterEstimator, delta: torch.Tensor | np.ndarray) -> torch.Tensor:
    # clone: tensors made under Lightning's inference_mode (trainer.test) cannot enter autograd
    return torch.as_tensor(delta).to(model.device, torch.float32).clone()


def _values(model: ParameterEstimator, feats: torch.Tensor) -> torch.Tensor:
    """Differentiable point estimate (B, P) in physical units from standardised features.

    The task says what that is (``point_estimate``): a decoded value that may not carry a gradient
    (classification's argmax class centre) has a differentiable stand-in there (the softmax
    expectation).
    """
    return model.task.point_estimate(model.task(model.backbone(feats)))


def input_gradients(
    model: ParameterEstimator, delta: torch.Tensor | np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """Mean over spectra of |∂(θ_p / σ_p) / ∂feature|, shape (P, n_z, n_kept).

    Gradients are taken w.r.t. the transform's output, so each number is "training stds of the
    parameter per standardised unit of that feature": comparable across parameters, bins and
    redshifts. Runs in eval mode (no dropout, running batch-norm statistics) and restores the
    previous mode.
    """
    was_training = model.training
    model.eval()
    x = _as_input(model, delta)
    std = model.task.codec.std
    total: torch.Tensor | None = None
    try:
        with torch.enable_grad():
            for start in range(0, len(x), batch_size):
                feats = (
                    model.transform(x[start : start + batch_size]).detach().requires_grad_(True)
                )
                values = _values(model, feats) / std
                # spectra are independent in eval mode, so the gradient of the batch sum is
                # per-spectrum
                grads = torch.stack(
                    [
                        torch.autograd.grad(values[:, p].sum(), feats, retain_graph=True)[0]
                        .abs()
                        .sum(0)
                        for p in range(values.shape[1])
                    ]
                )
                total = grads if total is None else total + grads
    finally:
        model.train(was_training)
    return (total / len(x)).cpu().numpy()


def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² per parameter over axis -2 (spectra); leading axes (repeats) are kept."""
    ss_res = ((y - pred) ** 2).sum(-2)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / ss_tot


@torch.no_grad()
def permutation_importance(
    model: ParameterEstimator,
    delta: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    n_repeats: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Mean drop of R² per parameter when one kept (z, k) column of raw Δ² is shuffled, shape (P,
    n_z, n_kept).

    Uses the model's reported point estimate (decode's "value"), i.e. what the metrics score. All
    repeats of one column go through a single forward pass. A column the model ignores scores ≈ 0;
    negative values are noise. Evaluate on held-out spectra: on training data it measures
    memorisation.
    """
    was_training = model.training
    model.eval()
    try:
        x = _as_input(model, delta)
        y_np = np.asarray(torch.as_tensor(y).detach().cpu(), dtype=np.float64)
        n, n_z = x.shape[0], x.shape[1]
        kept = model.transform.kept_bins.tolist()

        def predict(inp: torch.Tensor) -> np.ndarray:
            return model.task.decode(model(inp))["value"].double().cpu().numpy()

        base = _r2(predict(x), y_np)
        rng = np.random.default_rng(seed)
        out = np.zeros((y_np.shape[1], n_z, len(kept)))
        for z in range(n_z):
            for j, b in enumerate(kept):
                perms = torch.as_tensor(
                    np.stack([rng.permutation(n) for _ in range(n_repeats)]), device=x.device
                )
                xp = x.repeat(n_repeats, 1, 1)
                xp[:, z, b] = x[:, z, b][perms].reshape(-1)
                r2 = _r2(predict(xp).reshape(n_repeats, n, -1), y_np)  # (n_repeats, P)
                out[:, z, j] = (base - r2).mean(0)
    finally:
        model.train(was_training)
    return out


def top_features(
    score: np.ndarray, k_kept: np.ndarray, redshifts: list[float], n: int = 3
) -> list[list[float]]:
    """The n largest entries of one parameter's (n_z, n_kept) map as [z, k, score] rows, largest
    first."""
    order = np.argsort(score, axis=None)[::-1][:n]
    return [
        [float(redshifts[i]), float(k_kept[j]), float(score[i, j])]
        for i, j in zip(*np.unravel_index(order, score.shape), strict=True)
    ]


def saliency_figure(
    grad: np.ndarray,
    perm: np.ndarray,
    k_kept: np.ndarray,
    redshifts: list[float],
    parameters: list[str],
) -> Figure:
    """One row per parameter: input gradient (left) and permutation importance (right) against k, a
    line per z."""
    fig, axes = plt.subplots(
        len(parameters), 2, figsize=(10, 3.2 * len(parameters)), squeeze=False
    )
    panels = (
        (
            grad,
            r"mean $|\partial\theta/\partial x|$ [$\sigma_\theta$ per $\sigma_x$]",
            "input gradient",
        ),
        (perm, r"$R^2$ drop", "permutation importance"),
    )
    for row, p in enumerate(parameters):
        for col, (score, ylabel, what) in enumerate(panels):
            ax = axes[row, col]
            for i, z in enumerate(redshifts):
                ax.plot(k_kept, score[row, i], marker="o", ms=3, label=f"z = {float(z):g}")
            ax.set_xscale("log")
            ax.set_xlabel("k [1/Mpc]")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{LABELS.get(p, p)}: {what}")
            if col == 1:
                ax.axhline(0.0, color="k", lw=0.6)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def saliency_table(
    grad: np.ndarray,
    perm: np.ndarray,
    k_kept: np.ndarray,
    redshifts: list[float],
    parameters: list[str],
) -> dict[str, Any]:
    """Plain lists for ``mlflow.log_dict``: the full maps [parameter][z][k] and each parameter's
    top 3 per method."""
    k_kept = np.asarray(k_kept, dtype=np.float64)
    return {
        "parameters": list(parameters),
        "redshifts": [float(z) for z in redshifts],
        "k": k_kept.tolist(),
        "gradient": np.asarray(grad, dtype=np.float64).tolist(),
        "permutation": np.asarray(perm, dtype=np.float64).tolist(),
        "top": {
            p: {
                "gradient": top_features(grad[j], k_kept, redshifts),
                "permutation": top_features(perm[j], k_kept, redshifts),
            }
            for j, p in enumerate(parameters)
        },
        "units": {
            "gradient": "mean |d(theta/std_train)/d(standardised feature)|",
            "permutation": "mean drop of R2 when the (z, k) column is shuffled",
            "k": "1/Mpc",
        },
    }


def compute_saliency(
    model: ParameterEstimator,
    delta: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    n_repeats: int = 5,
    seed: int = 0,
) -> tuple[Figure, dict[str, Any]]:
    """(figure, table) of both saliency maps on (delta, y), e.g. ``dm.tensors["test"]`` after
    testing."""
    k_kept = np.asarray(model.meta["k"], dtype=np.float64)[model.transform.kept_bins.cpu().numpy()]
    redshifts = [float(z) for z in model.meta["redshifts"]]
    grad = input_gradients(model, delta)
    perm = permutation_importance(model, delta, y, n_repeats=n_repeats, seed=seed)
    return (
        saliency_figure(grad, perm, k_kept, redshifts, model.param_names),
        saliency_table(grad, perm, k_kept, redshifts, model.param_names),
    )
