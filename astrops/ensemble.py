"""Deep ensembles: K members of one configuration, trained from different seeds on the same split,
combined into one predictor (Lakshminarayanan et al. 2017).

Combination: regression and Gaussian members → mixture mean and total variance (mean of the members'
variances + variance of their means; for plain regression the spread alone); classification →
averaged class probabilities. The combined spread is then calibrated on the validation split like a
single model. On disk an ensemble is a directory of member checkpoints plus ``manifest.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from astrops.calibration import fit as fit_calibration
from astrops.models.tasks import decode_probs
from astrops.validation import finite_numbers

MANIFEST = "manifest.json"
FORMAT = "astrops-ensemble/1"


def combine(decs: list[dict[str, torch.Tensor]], kind: str, codec) -> dict[str, torch.Tensor]:
    """One prediction from the members' decoded outputs (each ``value`` (B, P), ``std``/``probs``)."""
    if kind == "classification":
        return decode_probs(torch.stack([d["probs"] for d in decs]).mean(0), codec)
    values = torch.stack([d["value"] for d in decs])  # (K, B, P)
    var = values.var(0, unbiased=False)  # between members: what the seeds disagree on
    if kind == "gaussian":
        var = var + torch.stack([d["std"] ** 2 for d in decs]).mean(0)  # within members: their own noise
    return {"value": values.mean(0), "std": var.sqrt()}


def calibrated(dec: dict[str, torch.Tensor], calibration: dict[str, torch.Tensor], codec) -> dict[str, torch.Tensor]:
    """Apply ensemble-level factors: variance scaling of ``std``, temperature on the averaged probabilities."""
    out = dict(dec)
    if "var_scale" in calibration and "std" in dec:
        out["std"] = dec["std"] * calibration["var_scale"].to(dec["std"]).sqrt()
    if "temperature" in calibration and "probs" in dec:
        t = calibration["temperature"].to(dec["probs"])[:, None]
        out = decode_probs((dec["probs"].clamp_min(1e-12).log() / t).softmax(-1), codec)
    return out


class Ensemble(nn.Module):
    """Members sharing input transform, target codec and task kind; quacks like one ParameterEstimator
    for prediction (``transform``, ``task.codec``, ``predict_physical``)."""

    def __init__(self, members: list[nn.Module], calibration: dict[str, torch.Tensor] | None = None):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = members[0]
        for m in members[1:]:
            same = (m.task.kind == first.task.kind and m.param_names == first.param_names and
                    all(torch.equal(a, b) for a, b in zip(m.transform.state_dict().values(),
                                                          first.transform.state_dict().values(), strict=True)) and
                    all(torch.equal(getattr(m.task.codec, b), getattr(first.task.codec, b))
                        for b in ("mean", "std", "edges")))
            if not same:
                raise ValueError("ensemble members differ in task, parameters, input scaling or target scaling: "
                                 "train them with one config and one data.split_seed")
        self.members = nn.ModuleList(members)
        self.kind, self.param_names = first.task.kind, first.param_names
        self.transform, self.task = first.transform, first.task
        self.calibration = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in (calibration or {}).items()}
        if any(v.shape != (len(self.param_names),) for v in self.calibration.values()):
            raise ValueError(f"calibration factors must have one value per parameter ({len(self.param_names)})")

    @torch.no_grad()
    def raw(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Combined prediction before the ensemble-level calibration."""
        for m in self.members:
            m.eval()
        return combine([m.predict_physical(delta) for m in self.members], self.kind, self.task.codec)

    @torch.no_grad()
    def predict_physical(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        return calibrated(self.raw(delta), self.calibration, self.task.codec)

    def calibrate(self, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
        """Fit the ensemble-level calibration on the validation split; returns the factors for logging."""
        self.calibration = fit_calibration(self.raw(x_val), y_val, self.task.codec)
        return {f"calibration/{name}/{p}": float(v) for name, t in self.calibration.items()
                for p, v in zip(self.param_names, t, strict=True)}


def save(directory: str | Path, checkpoints: list[str], calibration: dict[str, torch.Tensor], info: dict) -> Path:
    """Copy the member checkpoints into ``directory`` and write the manifest; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ckpt in enumerate(checkpoints):
        name = f"member_{i}.ckpt"
        shutil.copyfile(ckpt, directory / name)
        files.append(name)
    manifest = {"format": FORMAT, "members": files,
                "calibration": {k: [float(x) for x in v] for k, v in calibration.items()}, **info}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    tmp.replace(directory / MANIFEST)
    return directory


MAX_MEMBERS = 64
CALIBRATIONS = ("var_scale", "temperature")  # the only factors Ensemble.calibrate writes


def read_manifest(directory: str | Path) -> dict:
    """The manifest after checking everything the loader uses; the members are checkpoints read by
    :func:`astrops.checkpoints.load_estimator` like any other."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is a directory without {MANIFEST}: pass a checkpoint file or an "
                                "ensemble directory written by train.py ensemble.members=K")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}): the ensemble directory is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} has format {got!r}, expected {FORMAT!r}")
    members, calibration = manifest.get("members"), manifest.get("calibration", {})
    if not (isinstance(members, list) and 2 <= len(members) <= MAX_MEMBERS and len(set(map(str, members))) == len(members)
            and all(isinstance(m, str) and "/" not in m and m not in (".", "..") for m in members)):
        raise ValueError(f"{path}: 'members' must list 2 to {MAX_MEMBERS} distinct checkpoint file names in the directory")
    if not isinstance(calibration, dict) or not all(k in CALIBRATIONS and finite_numbers(v, positive=True)
                                                    for k, v in calibration.items()):
        raise ValueError(f"{path}: 'calibration' may only map {list(CALIBRATIONS)} to lists of finite positive numbers")
    return manifest
