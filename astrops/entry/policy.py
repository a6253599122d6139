"""The one policy of every entry point (the role lightning-hydra-template's ``task_wrapper``
plays).

* The config is checked against the entry's rule table before anything heavy is imported: a typo
  costs the time Python takes to start.
* Bad input — a refused config value, or an error of a type the entry names as the user's to fix —
  is one line on stderr (``error: <problem>: <fix>``) and exit status 2, before any work starts.
* In a multirun of a command that returns a sweep objective (``train.py``, ``baselines.py``), a
  failing job must not end the sweep: it is logged and returns NaN to the sweeper (its MLflow run
  is already closed as FAILED with the error). Commands without an objective (``simulate.py``,
  ``predict.py``) fail in a multirun too, so that a Slurm/submitit shard that could not run does
  not report success.
* An interrupt (Ctrl-C, SIGTERM) is one line — ``interrupted; resume with: python train.py ...
  ckpt_path=…`` where the run can resume — and exit status 130.
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
INTERRUPTED = 130  # the shell's status for a job ended by SIGINT; SIGTERM is reported the same way


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def refuse(exc: BaseException, objective: bool = True) -> float:
    """Bad input: NaN for the sweeper in a multirun of an objective, else one line on stderr and
    exit 2."""
    if objective and in_multirun():
        log.error("job failed: %s", exc)
        return float("nan")
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def entry_point(
    rules: tuple[Rule, ...],
    refusals: tuple[type[BaseException], ...],
    objective: bool = True,
):
    """Wrap ``fn(cfg)`` in the policy. ``refusals`` names the errors that are bad input (from
    :mod:`astrops.errors`, which loads nothing heavy); errors raised inside Hydra's
    ``instantiate`` count by their cause. ``objective``: ``fn``
    returns what a sweeper optimises, so a failing job of a multirun returns NaN instead of ending
    the sweep."""

    def wrap(fn: Callable[[DictConfig], T]) -> Callable[[DictConfig], T | float]:
        @functools.wraps(fn)
        def run(cfg: DictConfig) -> Any:
            try:
                validate(cfg, rules)
            except ValueError as exc:
                return refuse(exc, objective)
            from hydra.errors import InstantiationException

            from astrops.entry import console

            console.quiet_libraries()
            bad_input = refusals
            try:
                return fn(cfg)
            # Ctrl-C or SIGTERM: say how to go on, not a traceback
            except KeyboardInterrupt as exc:
                print(f"interrupted{f'; {exc}' if str(exc) else ''}", file=sys.stderr, flush=True)
                sys.exit(INTERRUPTED)
            # Lightning's sys.exit(1) after a Ctrl-C / SIGTERM outside fit
            except SystemExit as exc:
                if not isinstance(exc.__context__, KeyboardInterrupt):
                    raise
                print("interrupted", file=sys.stderr, flush=True)
                sys.exit(INTERRUPTED)
            except InstantiationException as exc:  # a component refused its configuration
                if not isinstance(exc.__cause__, (*bad_input, ValueError)):
                    raise
                return refuse(exc.__cause__, objective)
            except bad_input as exc:
                return refuse(exc, objective)
            except Exception:
                if not (objective and in_multirun()):
                    raise
                log.exception("job failed; the sweep goes on")
                return float("nan")

        return run

    return wrap
