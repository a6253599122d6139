"""The one policy of every entry point (the role lightning-hydra-template's ``task_wrapper`` plays).

* The config is checked against the entry's rule table before anything heavy is imported: a typo costs
  the time Python takes to start.
* Bad input — a refused config value, or an error of a type the entry names as the user's to fix —
  is one line on stderr (``error: <problem>: <fix>``) and exit status 2, before any work starts.
* In a multirun, a failing job must not end the sweep: it is logged and returns NaN to the sweeper
  (its MLflow run, if it had one, is already closed as FAILED with the error).
* Anything else is a bug: its traceback is kept.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from astrops.validation import Rule, validate

log = logging.getLogger("astrops")
T = TypeVar("T")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def refuse(exc: BaseException) -> float:
    """Bad input: NaN for the sweeper in a multirun, else one line on stderr and exit status 2."""
    if in_multirun():
        log.error("job failed: %s", exc)
        return float("nan")
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def entry_point(rules: tuple[Rule, ...], refusals: Callable[[], tuple[type[BaseException], ...]]):
    """Wrap ``fn(cfg)`` in the policy. ``refusals()`` (called after validation, so the heavy modules that
    define the error types load only for valid configs) names the errors that are bad input; errors
    raised inside Hydra's ``instantiate`` count by their cause."""

    def wrap(fn: Callable[[DictConfig], T]) -> Callable[[DictConfig], T | float]:
        @functools.wraps(fn)
        def run(cfg: DictConfig) -> Any:
            try:
                validate(cfg, rules)
            except ValueError as exc:
                return refuse(exc)
            from hydra.errors import InstantiationException

            bad_input = refusals()
            try:
                return fn(cfg)
            except InstantiationException as exc:  # a component refused its configuration
                if not isinstance(exc.__cause__, (*bad_input, ValueError)):
                    raise
                return refuse(exc.__cause__)
            except bad_input as exc:
                return refuse(exc)
            except Exception:
                if not in_multirun():
                    raise
                log.exception("job failed; the sweep goes on")
                return float("nan")

        return run

    return wrap
