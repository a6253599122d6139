"""One checkpoint file: read with every field of its ``astrops`` metadata checked, and rebuilt
into a :class:`~astrops.models.SpectrumModel` only through the registry's allowlist.

``torch.load(weights_only=True)`` stops pickled code; sizes are checked on PyTorch's ``meta``
device (no memory) against the stored weights before the real module is built, so a damaged or
crafted file is refused in one line instead of failing in a traceback, returning NaN, or
allocating more memory than the machine has.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from astrops.errors import InputError, ModelSpecError
from astrops.models import SpectrumModel, SpectrumTransform, TargetCodec
from astrops.models.novelty import NoveltyScore
from astrops.models.registry import build, check_spec
from astrops.validation import finite_numbers

MAX_WEIGHTS = 100_000_000  # far above any network here (the default has ~0.14 M)
MAX_CLASSES = 10_000
# flows: per parameter, nondecreasing levels in [0, 1] (astrops.models.flow)
QUANTILE_MAP = "quantile_map"


def _meta_problems(meta: dict) -> list[str]:
    """What is wrong with the metadata fields (empty when every field is usable)."""
    k, z, bins, params = (
        meta.get("k"),
        meta.get("redshifts"),
        meta.get("kept_bins"),
        meta.get("parameters"),
    )
    problems = [
        name
        for name, ok in (
            ("model", isinstance(meta.get("model"), dict)),
            ("task", isinstance(meta.get("task"), dict)),
            ("k", finite_numbers(k)),
            ("redshifts", finite_numbers(z)),
            (
                "parameters",
                isinstance(params, list)
                and len(params) > 0
                and len(set(map(str, params))) == len(params)
                and all(isinstance(p, str) and p for p in params),
            ),
            (
                "n_classes",
                isinstance(meta.get("n_classes"), int) and 2 <= meta["n_classes"] <= MAX_CLASSES,
            ),
        )
        if not ok
    ]
    if "k" not in problems:
        ok = (
            isinstance(bins, list)
            and len(bins) > 0
            and len(set(bins)) == len(bins)
            and all(
                isinstance(b, int) and not isinstance(b, bool) and 0 <= b < len(k) for b in bins
            )
        )
        problems += [] if ok else ["kept_bins"]
    if not {"k", "redshifts", "kept_bins"} & set(problems) and meta.get("input_shape") != [
        len(z),
        len(bins),
    ]:
        problems.append("input_shape")
    box = meta.get("prior_box")
    if (
        box is not None
        and "parameters" not in problems
        and not (
            isinstance(box, dict)
            and all(
                finite_numbers(box.get(p)) and len(box[p]) == 2 and box[p][0] < box[p][1]
                for p in params
            )
        )
    ):
        problems.append("prior_box")
    if "ood" in meta and not {"redshifts", "kept_bins"} & set(problems):
        try:  # older checkpoints have none: their inputs get no OOD score
            NoveltyScore.from_meta(meta["ood"], len(z) * len(bins))
        except ValueError:
            problems.append("ood")
    return problems


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents after every check that needs no model: safe unpickling, astrops
    metadata of the right types and ranges, backbone and task configs the registry accepts."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"checkpoint {path} is a directory: pass a .ckpt file (or an ensemble directory to "
            "predict)"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass the path train.py printed last"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    # unpickling errors come in many types; torch's own advice must not reach the user
    except Exception:
        raise InputError(
            f"{path} is not a safe astrops checkpoint (it holds pickled objects or is damaged): "
            "refusing to load it"
        ) from None
    meta = ckpt.get("astrops") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not meta or not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(
            f"{path} is not an astrops checkpoint (no 'astrops' metadata or state_dict): "
            "pass a checkpoint written by train.py"
        )
    wrong = _meta_problems(meta)
    if wrong:
        raise InputError(
            f"{path}: astrops metadata fields {wrong} are missing, of the wrong type or "
            "inconsistent: "
            "the file is damaged or was not written by train.py"
        )
    # checkpoints before the rename: the task config's name (not Hydra's job name)
    if "task_name" in meta:
        legacy = meta.pop("task_name")
        meta.setdefault("task_config", legacy)
    run_id = meta.get("mlflow_run_id")
    if run_id is not None and not (
        isinstance(run_id, str) and len(run_id) == 32 and run_id.isalnum()
    ):
        raise InputError(
            f"{path}: mlflow_run_id {str(run_id)[:40]!r} is not an MLflow run id: the file is "
            "damaged"
        )
    try:
        check_spec(meta["model"], "backbone", ("input_shape",))
        check_spec(meta["task"], "task", ("codec", "in_features"))
    except ModelSpecError as exc:
        raise InputError(f"{path}: {exc}") from None
    return ckpt


def _assemble(meta: dict) -> SpectrumModel:
    transform = SpectrumTransform(len(meta["redshifts"]), len(meta["k"]), meta["kept_bins"])
    codec = TargetCodec(len(meta["parameters"]), meta["n_classes"])
    backbone = build(meta["model"], "backbone", input_shape=tuple(meta["input_shape"]))
    task = build(meta["task"], "task", codec=codec, in_features=backbone.out_features)
    return SpectrumModel(backbone, task, transform, meta["parameters"], meta=meta)


def load_estimator(path: str | Path) -> tuple[SpectrumModel, dict]:
    """The model (a plain :class:`~astrops.models.SpectrumModel`: applying it needs no Lightning)
    and its metadata; its sizes are first checked against the stored weights at no memory cost.
    Training's LightningModule writes the same state-dict keys (``transform.*``, ``backbone.*``,
    ``task.*``)."""
    ckpt = read_checkpoint(path)
    meta, state = ckpt["astrops"], ckpt["state_dict"]
    try:
        with torch.device("meta"):  # shapes only: a crafted size cannot allocate anything here
            probe = {k: tuple(v.shape) for k, v in _assemble(meta).state_dict().items()}
        if sum(math.prod(s) for s in probe.values()) > MAX_WEIGHTS:
            raise ValueError(f"its config asks for more than {MAX_WEIGHTS:.0e} weights")
        stored = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
        # calibration factors absent from older checkpoints default to 1; the asinh flag to False
        optional = (".var_scale", ".temperature", "transform.asinh")
        differ = sorted(
            k
            for k in probe
            if stored.get(k) != probe[k] and not (k.endswith(optional) and k not in stored)
        )
        if differ:
            raise ValueError(f"weights {differ[:3]} are missing or of another shape")
        qmap = state.get("task.quantile_map")
        if qmap is not None and not _quantile_map(qmap.tolist()):
            raise ValueError("its quantile_map is not nondecreasing levels in [0, 1]")
        base = [state.get(f"task.flow.base.{b}") for b in ("loc", "scale")]
        if base[0] is not None and not (
            finite_numbers(base[0].tolist()) and finite_numbers(base[1].tolist(), positive=True)
        ):
            raise ValueError("its flow's base location or scale is not finite and positive")
        model = _assemble(meta)
        model.load_state_dict(state, strict=False)
        if model.transform.kept_bins.tolist() != meta["kept_bins"]:
            raise ValueError("its stored kept_bins differ from its metadata")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(
            f"checkpoint {path} does not match its own config ({str(exc).splitlines()[0][:200]}): "
            "the file is damaged"
        ) from None
    return model, meta


def _quantile_map(v: object) -> bool:
    return (
        isinstance(v, list)
        and 0 < len(v) <= MAX_CLASSES
        and all(
            isinstance(row, list)
            and 2 <= len(row) <= 1001
            and finite_numbers(row)
            and all(0 <= x <= 1 for x in row)
            and all(a <= b for a, b in zip(row, row[1:], strict=False))
            for row in v
        )
    )
