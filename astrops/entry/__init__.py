"""The entry layer: what ``simulate.py``, ``train.py``, ``baselines.py``, ``predict.py`` and
``python -m astrops store`` run, under one policy (:mod:`.policy`). It is the only layer that
composes Hydra configs and joins the pipeline's parts; importing it stays light (the commands load
on first use)."""

from __future__ import annotations

from typing import Any

__all__ = ["prediction_metadata", "run_baselines", "run_predict", "run_simulate", "run_train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from astrops.entry import commands

        return getattr(commands, name)
    raise AttributeError(f"module 'astrops.entry' has no attribute {name!r}")
