"""Apply a trained model to spectra in 21CMMC's format: ``astrops.load_model(path).predict(k, delta)``.

Checkpoints are read with ``torch.load(weights_only=True)`` (no pickled code runs) and the parts
are rebuilt only from ``astrops.`` classes, so a crafted checkpoint cannot name arbitrary callables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate

from astrops.models import ParameterEstimator, SpectrumTransform, TargetCodec

if TYPE_CHECKING:
    from astrops.ensemble import Ensemble

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Spectra that do not fit the model (one line, names the fix)."""


def _only_astrops_targets(node: Any) -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith("astrops."):
            raise InputError(f"checkpoint names _target_ {target!r} outside astrops: refusing to build it")
        for v in node.values():
            _only_astrops_targets(v)
    elif isinstance(node, list):
        for v in node:
            _only_astrops_targets(v)


class Predictor:
    """A trained model plus the k grid and redshifts it expects."""

    def __init__(self, model: ParameterEstimator | Ensemble, meta: dict):
        self.model, self.meta = model.eval(), meta
        self.k = np.asarray(meta["k"], dtype=np.float64)
        self.redshifts = [float(z) for z in meta["redshifts"]]
        self.parameters = list(meta["parameters"])
        self.kept_bins = np.asarray(meta["kept_bins"], dtype=int)

    def check(self, k: np.ndarray, delta: np.ndarray, redshifts: np.ndarray | None) -> np.ndarray:
        """Validate and reshape input to (N, n_z, n_k)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.shape != self.k.shape or not np.allclose(k, self.k, rtol=1e-6):
            raise InputError(f"k grid ({len(k)} bins, {k.min():.4g}..{k.max():.4g}) differs from the model's training grid "
                             f"({len(self.k)} bins, {self.k.min():.4g}..{self.k.max():.4g}) at relative 1e-6: "
                             "compute spectra with the same box (HII_DIM, BOX_LEN) and 21CMMC binning")
        n_z = len(self.redshifts)
        if redshifts is None:
            if n_z > 1:
                raise InputError(f"this model was trained on redshifts {self.redshifts}: the input needs a 'redshifts' "
                                 f"key and delta of shape (N, {n_z}, {len(k)})")
            redshifts = np.asarray(self.redshifts)
        redshifts = np.atleast_1d(np.asarray(redshifts, dtype=np.float64))
        if redshifts.shape != (n_z,) or not np.allclose(redshifts, self.redshifts):
            raise InputError(f"input redshifts {redshifts.tolist()} differ from the model's {self.redshifts}")
        d = np.asarray(delta, dtype=np.float64)
        if d.shape[-1] != len(k):
            raise InputError(f"delta has {d.shape[-1]} k-bins, k has {len(k)}")
        d = d.reshape(-1, n_z, len(k)) if d.ndim == 1 or (d.ndim == 2 and n_z > 1) else d
        if d.ndim == 2:
            d = d[:, None, :]
        if d.ndim != 3 or d.shape[1] != n_z:
            raise InputError(f"delta shape {np.shape(delta)} does not fit redshifts {self.redshifts}: "
                             f"use (n_k,), (N, n_k) for one redshift or (n_z, n_k), (N, n_z, n_k)")
        bad = ~np.isfinite(d[:, :, self.kept_bins])
        if bad.any():
            raise InputError(f"{int(bad.any(axis=(1, 2)).sum())} spectra have NaN/inf in k-bins the model uses "
                             f"(bins {sorted(set(self.kept_bins[np.nonzero(bad)[2]].tolist()))})")
        if (d[:, :, self.kept_bins] < 0).any():
            raise InputError("delta has negative values: Δ² is a power and must be >= 0 (mK²)")
        return d

    @torch.no_grad()
    def predict(self, k: np.ndarray, delta: np.ndarray, redshifts: np.ndarray | None = None) -> pd.DataFrame:
        """One row per spectrum: parameter values (class-centre values for classification) and extras."""
        d = self.check(k, delta, redshifts)
        x = torch.as_tensor(np.nan_to_num(d, nan=0.0), dtype=torch.float32)
        feats = self.model.transform(x)
        far = (feats.abs() > 6).any(dim=(1, 2))
        if far.any():
            log.warning("%d of %d spectra lie far outside the training distribution (|standardised feature| > 6): "
                        "their predictions are extrapolations", int(far.sum()), len(x))
        dec = self.model.predict_physical(x)
        df = pd.DataFrame(dec["value"].numpy().astype(np.float64), columns=self.parameters)
        if "std" in dec:  # Gaussian heads and ensembles: 1σ of the (calibrated) predictive distribution
            for j, p in enumerate(self.parameters):
                df[f"{p}_std"] = dec["std"][:, j].numpy().astype(np.float64)
        if "class" in dec:
            for j, p in enumerate(self.parameters):
                df[f"{p}_class"] = dec["class"][:, j].numpy()
                df[f"{p}_prob"] = dec["prob"][:, j].numpy()
        df["out_of_distribution"] = far.numpy()
        return df


def read_spectra_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(k, delta, redshifts or None) from a 21CMMC-format npz, never unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist: give an npz with 'k' and 'delta'")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "k" not in z or "delta" not in z:
                raise InputError(f"{path} lacks 'k' or 'delta': it must be in 21CMMC's format")
            return z["k"], z["delta"], z.get("redshifts")
    except ValueError as exc:
        raise InputError(f"{path} holds pickled Python objects or is not an npz: refusing to load it "
                         "(only plain numeric arrays are read)") from exc


def load_model(path: str | Path) -> Predictor:
    """Rebuild a model from a checkpoint written by ``train.py``, or an ensemble from its directory."""
    path = Path(path)
    if path.is_dir():
        return _load_ensemble(path)
    model, meta = _load_estimator(path)
    return Predictor(model, meta)


def _load_ensemble(path: Path) -> Predictor:
    from astrops import ensemble

    try:
        manifest = ensemble.read_manifest(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    members = [_load_estimator(path / name) for name in manifest["members"]]
    try:
        model = ensemble.Ensemble([m for m, _ in members], manifest.get("calibration"))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    meta = {**members[0][1], "ensemble": {k: v for k, v in manifest.items() if k != "format"}}
    meta["mlflow_run_id"] = manifest.get("mlflow_run_id", meta.get("mlflow_run_id"))
    return Predictor(model, meta)


def _load_estimator(path: Path) -> tuple[ParameterEstimator, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass the path train.py printed last")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(f"{path} is not a safe astrops checkpoint ({type(exc).__name__}): refusing to load it") from exc
    meta = ckpt.get("astrops") if isinstance(ckpt, dict) else None
    if not meta:
        raise InputError(f"{path} is not an astrops checkpoint (no 'astrops' metadata)")
    _only_astrops_targets(meta["model"])
    _only_astrops_targets(meta["task"])
    state = ckpt["state_dict"]
    n_z, n_k = len(meta["redshifts"]), len(meta["k"])
    transform = SpectrumTransform(n_z, n_k, meta["kept_bins"])
    codec = TargetCodec(len(meta["parameters"]), meta["n_classes"])
    backbone = instantiate(meta["model"], input_shape=tuple(meta["input_shape"]))
    task = instantiate(meta["task"], codec=codec, in_features=backbone.out_features)
    model = ParameterEstimator(backbone, task, transform, meta["parameters"], train_metrics=False, meta=meta)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # metric states are not weights; calibration factors absent from older checkpoints default to 1
    missing = [m for m in missing if not m.startswith("metrics.") and not m.endswith((".var_scale", ".temperature"))]
    if missing:
        raise InputError(f"checkpoint {path} lacks weights {missing[:3]}...: it does not match its own config")
    return model, meta
