"""An ensemble on disk: a directory of member checkpoints (each read like any other) plus
``manifest.json`` (format, member file names, ensemble-level calibration factors, provenance).
:func:`save_ensemble` writes it, :func:`read_manifest` checks it, :func:`load_ensemble` rebuilds
the :class:`astrops.models.Ensemble` from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from astrops.checkpoints.checkpoint import QUANTILE_MAP, _quantile_map, load_estimator
from astrops.errors import InputError
from astrops.limits import MAX_MEMBERS
from astrops.models import Ensemble
from astrops.validation import finite_numbers

MANIFEST = "manifest.json"
FORMAT = "astrops-ensemble/1"
# the per-parameter factors Ensemble.calibrate writes: positive, or (a flow base location) signed
CALIBRATIONS = ("var_scale", "temperature", "base_scale")
SIGNED = ("base_loc",)


def save_ensemble(
    directory: str | Path, checkpoints: list[str], calibration: dict[str, torch.Tensor], info: dict
) -> Path:
    """Copy the member checkpoints into ``directory`` and write the manifest; returns the
    directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ckpt in enumerate(checkpoints):
        name = f"member_{i}.ckpt"
        shutil.copyfile(ckpt, directory / name)
        files.append(name)
    manifest = {
        "format": FORMAT,
        "members": files,
        "calibration": {k: torch.as_tensor(v).tolist() for k, v in calibration.items()},
        **info,
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    # atomic: a reader sees the old manifest or the new one, never half
    tmp.replace(directory / MANIFEST)
    return directory


def read_manifest(directory: str | Path) -> dict:
    """The manifest after checking everything the loader uses; the members are checkpoints read by
    :func:`load_estimator` like any other."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is a directory without {MANIFEST}: pass a checkpoint file or an "
            "ensemble directory written by train.py ensemble.members=K"
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"{path} is not readable JSON ({exc}): the ensemble directory is damaged"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} has format {got!r}, expected {FORMAT!r}")
    members, calibration = manifest.get("members"), manifest.get("calibration", {})
    if not (
        isinstance(members, list)
        and 2 <= len(members) <= MAX_MEMBERS
        and len(set(map(str, members))) == len(members)
        and all(isinstance(m, str) and "/" not in m and m not in (".", "..") for m in members)
    ):
        raise ValueError(
            f"{path}: 'members' must list 2 to {MAX_MEMBERS} distinct checkpoint file names in "
            "the directory"
        )
    if (
        not isinstance(calibration, dict)
        or not all(
            (k in CALIBRATIONS and finite_numbers(v, positive=True))
            or (k in SIGNED and finite_numbers(v))
            or (k == QUANTILE_MAP and _quantile_map(v))
            for k, v in calibration.items()
        )
        or ("base_loc" in calibration) != ("base_scale" in calibration)
    ):
        raise ValueError(
            f"{path}: 'calibration' may only map {list(CALIBRATIONS)} to lists of finite positive "
            f"numbers, {list(SIGNED)} to finite numbers (with base_scale) "
            f"and {QUANTILE_MAP!r} to lists of nondecreasing levels in [0, 1]"
        )
    return manifest


def load_ensemble(directory: str | Path) -> tuple[Ensemble, dict]:
    """The ensemble in ``directory`` and its metadata: the first member's, plus the manifest under
    ``ensemble`` and the ensemble's own MLflow run id."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    members = [load_estimator(directory / name) for name in manifest["members"]]
    try:
        model = Ensemble([m for m, _ in members], manifest.get("calibration"))
    except ValueError as exc:
        raise InputError(f"{directory}: {exc}") from exc
    meta = {**members[0][1], "ensemble": {k: v for k, v in manifest.items() if k != "format"}}
    meta["mlflow_run_id"] = manifest.get("mlflow_run_id", meta.get("mlflow_run_id"))
    return model, meta
