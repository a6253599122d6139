"""What a person reads after a run: the seed study's metrics table and the standard figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"HII_EFF_FACTOR": r"$\zeta$ (HII_EFF_FACTOR)", "ION_Tvir_MIN": r"$\log_{10} T_{\rm vir}$ [K]",
          "R_BUBBLE_MAX": r"$R_{\rm mfp}$ [Mpc]"}


def metrics_table(results: dict[str, float], parameters: list[str], kind: str, stage: str = "test") -> str:
    """The seed's table (Variable, RMSE, MAE, MSE, R2-Score; or Accuracy, Precision, Recall, F1) as markdown."""
    if kind == "classification":
        cols = [("Accuracy", "acc"), ("Acc ±1", "acc_pm1"), ("Precision", "precision"), ("Recall", "recall"),
                ("F1", "F1"), ("R2 (class centre)", "R2")]
    else:
        cols = [("RMSE", "RMSE"), ("MAE", "MAE"), ("MSE", "MSE"), ("R2-Score", "R2")]
    head = "| Variable | " + " | ".join(c for c, _ in cols) + " |"
    rule = "|---" * (len(cols) + 1) + "|"
    rows = [head, rule]
    for p in parameters:
        vals = [results.get(f"{stage}/{key}/{p}", float("nan")) for _, key in cols]
        rows.append(f"| {p} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(rows)


def pred_vs_true(pred: np.ndarray, true: np.ndarray, parameters: list[str], r2: dict[str, float] | None = None):
    fig, axes = plt.subplots(1, len(parameters), figsize=(4.2 * len(parameters), 4))
    for j, (ax, p) in enumerate(zip(np.atleast_1d(axes), parameters, strict=True)):
        lo, hi = float(min(true[:, j].min(), pred[:, j].min())), float(max(true[:, j].max(), pred[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=1)
        ax.scatter(true[:, j], pred[:, j], s=6, alpha=0.5)
        ax.set_xlabel(f"true {LABELS.get(p, p)}")
        ax.set_ylabel("predicted")
        if r2:
            ax.set_title(f"R² = {r2.get(p, float('nan')):.3f}")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: list, parameters: list[str]):
    fig, axes = plt.subplots(1, len(parameters), figsize=(5 * len(parameters), 4.4))
    for ax, cm, p in zip(np.atleast_1d(axes), matrices, parameters, strict=True):
        im = ax.imshow(np.asarray(cm), origin="lower", cmap="viridis", vmin=0, vmax=1)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(LABELS.get(p, p))
        fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    return fig


def training_curves(history: list[dict[str, float]]):
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    for key in ("train/loss", "val/loss"):
        vals = [h.get(key, np.nan) for h in history]
        if np.isfinite(vals).any():
            ax.plot(epochs, vals, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return fig
