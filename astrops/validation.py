"""One check of configuration values at the boundary, before any work: rules keyed by config path.

Hydra composes whatever the command line says (``seed=abc``, ``data.batch_size=0``,
``data.redshifts=[]``); without a check those values travel until something deep inside PyTorch,
GSL or torchmetrics breaks on them, often after the MLflow run or the store was touched. Each entry
point therefore calls :func:`validate` with its rule table first. A rule names its key, what the
value must be, and how to fix it, so every refusal reads the same: one line, the key, the fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from astrops.errors import ConfigValueError

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """``key`` must satisfy ``ok``; otherwise the user reads ``must`` and ``fix``."""

    key: str
    ok: Callable[[Any], bool]
    must: str
    fix: str

    def check(self, value: Any) -> None:
        try:
            good = bool(self.ok(value))
        # OSError: e.g. a file name too long
        except (TypeError, ValueError, OverflowError, OSError):
            good = False
        if not good:
            raise ConfigValueError(f"{self.key}={_show(value)}: must be {self.must}; {self.fix}")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(cfg: DictConfig | dict, rules: Iterable[Rule]) -> None:
    """Raise :class:`ConfigValueError` for the first rule the config breaks; absent keys are not
    checked."""
    for rule in rules:
        if isinstance(cfg, DictConfig):
            try:
                value = OmegaConf.select(cfg, rule.key, default=_ABSENT, throw_on_missing=True)
            except MissingMandatoryValue:
                raise ConfigValueError(
                    f"{rule.key} is not set: it must be {rule.must}; {rule.fix}"
                ) from None
        else:
            value = cfg.get(rule.key, _ABSENT)
        if value is _ABSENT:
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        rule.check(value)


# -- value predicates ------------------------------------------------------------------------
def is_int(v: Any, lo: int | None = None, hi: int | None = None) -> bool:
    return (
        isinstance(v, int)
        and not isinstance(v, bool)
        and (lo is None or v >= lo)
        and (hi is None or v <= hi)
    )


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def finite_numbers(v: Any, positive: bool = False) -> bool:
    """A non-empty list of finite numbers (booleans are not numbers), all > 0 if ``positive``."""
    return (
        isinstance(v, list)
        and len(v) > 0
        and all(is_number(x) and (not positive or x > 0) for x in v)
    )


def in_open_unit(v: Any) -> bool:
    return is_number(v) and 0 < v < 1


def positive_int(key: str, fix: str, hi: int | None = None) -> Rule:
    return Rule(
        key, lambda v: is_int(v, 1, hi), "a positive integer" + (f" <= {hi:g}" if hi else ""), fix
    )


def redshift_list(key: str, fix: str) -> Rule:
    return Rule(
        key,
        lambda v: (
            isinstance(v, list)
            and len(v) > 0
            and all(is_number(z) and z > 0 for z in v)
            and len(set(v)) == len(v)
        ),
        "a non-empty list of distinct positive redshifts",
        fix,
    )


def writable_file(key: str) -> Rule:
    """An output file path whose directory exists and is writable, and which is not itself a
    directory."""

    def ok(v: Any) -> bool:
        if not isinstance(v, str) or not v:
            return False
        path = Path(v)
        return (
            not path.is_dir()
            and path.absolute().parent.is_dir()
            and os.access(path.absolute().parent, os.W_OK)
        )

    return Rule(
        key,
        ok,
        "a file path in an existing, writable directory (not a directory)",
        f"create the directory first or choose another {key}=",
    )
