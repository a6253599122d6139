"""Checkpoints and ensemble directories written by ``train.py``: the one door between models and
files (:mod:`.checkpoint`, :mod:`.ensemble_dir`, :mod:`.mlflow_dir`).

A checkpoint is data, never code. ``torch.load(weights_only=True)`` stops pickled code; the
backbone and task are built only through :func:`astrops.models.registry.build`; and every field of
the ``astrops`` metadata the loader relies on is checked for type, range and consistency first, so
a damaged or crafted file is refused in one line instead of failing in a traceback, returning NaN,
or allocating more memory than the machine has. Sizes are checked on PyTorch's ``meta`` device (no
memory) against the stored weights before the real module is built.

An ensemble on disk is a directory of member checkpoints (each read like any other) plus
``manifest.json`` (format, member file names, ensemble-level calibration factors, provenance);
:func:`save_ensemble` writes it, :func:`read_manifest` checks it, :func:`load_ensemble` rebuilds
the :class:`astrops.models.Ensemble` from it.
"""

from astrops.checkpoints.checkpoint import (
    MAX_CLASSES,
    MAX_WEIGHTS,
    QUANTILE_MAP,
    load_estimator,
    read_checkpoint,
)
from astrops.checkpoints.ensemble_dir import (
    CALIBRATIONS,
    FORMAT,
    MANIFEST,
    MAX_MEMBERS,
    load_ensemble,
    read_manifest,
    save_ensemble,
)
from astrops.checkpoints.mlflow_dir import LOADER_MODULE, mlflow_model_data
from astrops.errors import InputError

__all__ = [
    "CALIBRATIONS",
    "FORMAT",
    "LOADER_MODULE",
    "MANIFEST",
    "MAX_CLASSES",
    "MAX_MEMBERS",
    "MAX_WEIGHTS",
    "QUANTILE_MAP",
    "InputError",
    "load_ensemble",
    "load_estimator",
    "mlflow_model_data",
    "read_checkpoint",
    "read_manifest",
    "save_ensemble",
]
