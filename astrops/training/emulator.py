"""``train_emulator(cfg)``: ``python train.py task=emulator`` — the simulator's inverse direction θ
→ Δ², from the same store, split and trainer, tracked as one MLflow run like every other.

The data module gives the noiseless stored spectra (an emulator learns the simulator, not an
instrument: ``data.observation`` must be none) and its split; the emulator learns θ → (mean, cosmic
variance) of every finite (z, k) bin; the best epoch's weights are tested on the test split and
written as one ``emulator.pt`` (plain tensors and hyperparameters), whose path is the last line
printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from astrops import tracking
from astrops.errors import DataConfigError
from astrops.models.emulator import SpectrumEmulator, emulator_scores, save_emulator
from astrops.training.network import _trainer


def emulator_data(dm) -> tuple[list[int], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The emulated bins (finite in every stored spectrum) and (θ, Δ²) tensors per split."""
    finite = np.isfinite(dm.delta).all(axis=(0, 1))
    bins = [int(j) for j in np.flatnonzero(finite)]
    tensors = {}
    for split, idx in (("train", dm.train_idx), ("val", dm.val_idx), ("test", dm.test_idx)):
        tensors[split] = (
            torch.as_tensor(dm.params[idx], dtype=torch.float32),
            torch.as_tensor(dm.delta[idx][:, :, bins], dtype=torch.float32),
        )
    return bins, tensors


def train_emulator(cfg: DictConfig) -> tuple[dict[str, float], str]:
    """Fit, restore the best epoch, test, save; returns (metrics, path of ``emulator.pt``)."""
    t0 = time.perf_counter()
    if cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    obs = cfg.data.get("observation")
    if obs not in (None, "none") and (not hasattr(obs, "get") or obs.get("name") != "none"):
        raise DataConfigError(
            "task=emulator learns the noiseless simulator: set data.observation=none (the "
            "likelihood "
            "adds the instrument's noise)"
        )
    dm = instantiate(cfg.data)
    dm.prepare()
    bins, data = emulator_data(dm)
    L.seed_everything(cfg.seed, workers=True)
    trainer = _trainer(cfg, None)
    run = tracking.tracked(tracking.mlflow_of(trainer.loggers), cfg)
    tags = tracking.run_tags(cfg, dm.lineage())
    with tracking.run_lifecycle(run, cfg, tags):
        t = cfg.task
        model = SpectrumEmulator(
            list(dm.parameters),
            dm.ranges.tolist(),
            [float(x) for x in dm.k],
            list(dm.redshifts),
            bins,
            tuple(t.hidden),
            float(t.beta),
            float(t.lr),
            float(t.weight_decay),
        )
        model.fit_scaling(data["train"][1])
        loaders = {
            s: DataLoader(
                TensorDataset(*data[s]),
                batch_size=int(cfg.data.batch_size) if s == "train" else 4096,
                shuffle=s == "train",
            )
            for s in ("train", "val")
        }
        trainer.fit(model, loaders["train"], loaders["val"])
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_path:
            model.load_state_dict(
                torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)[
                    "state_dict"
                ]
            )
        model = model.cpu().eval()
        model.fit_correlation(*data["train"])
        # out-of-sample residuals: both splits the weights never saw
        model.fit_error(*(torch.cat(t) for t in zip(data["val"], data["test"], strict=True)))
        results = emulator_scores(model, *data["test"])
        for zz, eta in zip(model.redshifts, model.error_scale[:, 0].tolist(), strict=True):
            results[f"error_scale/z{zz:g}"] = eta  # σ_emu² / σ_cv²
        with torch.no_grad():
            results["best/val/loss"] = float(model.loss(*data["val"]))
            # comparable across β
            results["best/val/nll"] = float(model.loss(*data["val"], beta=0.0))
        out = Path(cfg.paths.output_dir) / "emulator.pt"
        save_emulator(model, str(out), dm.lineage())
        results["time/total_s"] = time.perf_counter() - t0
        print(
            f"emulator on {len(data['test'][0])} test spectra: "
            + ", ".join(
                f"{k} {v:.3f}" for k, v in results.items() if k.startswith(("test/", "best/"))
            )
        )
        if run is not None:
            run.log_results(results, step=trainer.global_step)
            run.log_file(out, "emulator")
            run.set_tag("emulator", str(out))
    return results, str(out)
