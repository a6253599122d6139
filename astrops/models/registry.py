"""The only classes a configuration read from disk may build: one explicit name → class table.

Checkpoints, ensemble manifests and (later) MLflow Models carry the configs of their backbone and
task as plain data with a ``_target_`` name. Handing such a dict to ``hydra.utils.instantiate``
would let the file name *any* importable callable, and Hydra walks module attributes, so even a
prefix check (``astrops.``) is no defence: ``astrops.checkpoints.shutil.copyfile`` is "inside
astrops". Resolving the class and then checking its ``__module__`` is too late, because importing a
module can have side effects. So :func:`build` looks the name up in :data:`BACKBONES` /
:func:`task_classes` and nothing else, checks every key against the class's own keyword arguments,
allows only plain values (numbers, strings, booleans, flat lists of them), and only then calls the
class. Every loader goes through it.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from torch import nn

from astrops.errors import ModelSpecError
from astrops.models.backbones import CNNBackbone, DenseBackbone
from astrops.models.tasks import Task

BACKBONES: dict[str, type[nn.Module]] = {
    "astrops.models.backbones.DenseBackbone": DenseBackbone,
    "astrops.models.backbones.CNNBackbone": CNNBackbone,
}


def task_classes() -> dict[str, type[Task]]:
    """Every :class:`Task` subclass defined inside ``astrops.models``, by its ``_target_`` name.

    A new head is one class (and one YAML): it is in the table as soon as its module is imported,
    without a row to add here. The table stays closed: only classes this package defines qualify (a
    subclass made elsewhere, e.g. in a test or a user's script, does not), and names are looked up,
    never imported.
    """
    out: dict[str, type[Task]] = {}
    todo = list(Task.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("astrops.models.") and "<" not in cls.__qualname__:
            out[f"{cls.__module__}.{cls.__qualname__}"] = cls
    # names checkpoints written before a class moved still carry (looked up, like every name)
    out.update({old: out[new] for old, new in MOVED.items() if new in out})
    return out


# old ``_target_`` -> where the class lives now
MOVED = {
    "astrops.models.tasks.ClassificationTask": "astrops.models.classification.ClassificationTask"
}


def _table(role: str) -> dict[str, type[nn.Module]]:
    return BACKBONES if role == "backbone" else task_classes()


# Sizes a file may ask for: far above any network here. (The loader also compares the total size,
# built on PyTorch's meta device, with the stored weights before anything real is allocated.)
MAX_WIDTH, MAX_LAYERS = 65_536, 64


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_WIDTH
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return len(value) <= MAX_LAYERS and all(
            _plain(v) and not isinstance(v, list | tuple) for v in value
        )
    return False


def check_spec(
    spec: Any, role: str, supplied: tuple[str, ...] = ()
) -> tuple[type[nn.Module], dict[str, Any]]:
    """(class, keyword arguments) for a ``role`` config, or :class:`ModelSpecError` naming what is
    wrong.

    ``supplied`` are the arguments the caller provides itself (input shape, codec, ...): a file may
    not set them.
    """
    table = _table(role)
    if not isinstance(spec, dict):
        raise ModelSpecError(
            f"{role} config is {type(spec).__name__}, not a mapping: refusing to build it"
        )
    target = spec.get("_target_")
    if not isinstance(target, str) or target not in table:
        raise ModelSpecError(
            f"{role} _target_ {target!r} is not one of astrops' {role} classes "
            f"{sorted(table)}: refusing to build it"
        )
    cls = table[target]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", *supplied}
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:  # _args_, _partial_, _recursive_, nested configs, and plain typos alike
        raise ModelSpecError(
            f"{role} {target} has unknown keys {unknown} (accepted: {sorted(accepted)}): "
            "refusing to build it"
        )
    bad = sorted(k for k, v in kwargs.items() if not _plain(v))
    if bad:
        raise ModelSpecError(
            f"{role} {target} keys {bad} are not plain numbers, strings or flat lists of them "
            f"(sizes <= {MAX_WIDTH}, <= {MAX_LAYERS} entries): refusing to build it"
        )
    return cls, kwargs


def build(spec: Any, role: str, **supplied: Any) -> nn.Module:
    """Build a backbone or task from a config after :func:`check_spec`: the one way configs become
    modules."""
    cls, kwargs = check_spec(spec, role, tuple(supplied))
    return cls(**kwargs, **supplied)
