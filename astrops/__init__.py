"""astrops: reionization parameters from the 21-cm power spectrum, tracked in MLflow.

``astrops.load_model(path).predict(k, delta)`` applies a checkpoint (or ensemble directory) written
by ``train.py`` to spectra in 21CMMC's format and returns a DataFrame. ``load_model`` is imported
lazily, so ``import astrops`` itself stays cheap (no torch, Lightning or MLflow), and applying a
model loads torch, numpy and pandas but never Lightning, MLflow or torchmetrics (the model is a
plain ``torch.nn.Module``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astrops.inference import load_model

try:
    __version__ = version("astrops")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "load_model"]

_LAZY = {"load_model": "astrops.inference"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'astrops' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
