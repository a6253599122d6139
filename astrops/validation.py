"""One check of configuration values at the boundary, before any work: rules keyed by config path.

Hydra composes whatever the command line says (``seed=abc``, ``data.batch_size=0``,
``data.redshifts=[]``); without a check those values travel until something deep inside PyTorch,
GSL or torchmetrics breaks on them, often after the MLflow run or the store was touched. Each entry
point therefore calls :func:`validate` with its rule table first. A rule names its key, what the
value must be, and how to fix it, so every refusal reads the same: one line, the key, the fix.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

_ABSENT = object()


class ConfigValueError(ValueError):
    """A configuration value that cannot work (one line: key, value, requirement, fix)."""


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


# -- the rule tables of the entry points -----------------------------------------------------
SEED = Rule(
    "seed", lambda v: is_int(v, 0, 2**32 - 1), "an integer in [0, 2**32)", "e.g. seed=12345"
)

TRAIN_RULES: tuple[Rule, ...] = (
    SEED,
    positive_int("data.batch_size", "e.g. data.batch_size=32"),
    positive_int("data.eval_batch_size", "e.g. data.eval_batch_size=4096"),
    redshift_list("data.redshifts", "e.g. data.redshifts=[8.0] or data.redshifts=[7,8,9,10]"),
    Rule("data.test_fraction", in_open_unit, "a number in (0, 1)", "e.g. data.test_fraction=0.2"),
    Rule("data.val_fraction", in_open_unit, "a number in (0, 1)", "e.g. data.val_fraction=0.1"),
    Rule(
        "data.split_seed",
        lambda v: is_int(v, 0, 2**32 - 1),
        "an integer in [0, 2**32)",
        "e.g. data.split_seed=0",
    ),
    Rule(
        "data.n_classes",
        lambda v: is_int(v, 2, 10_000),
        "an integer in [2, 10000]",
        "e.g. data.n_classes=25",
    ),
    Rule(
        "data.train_size",
        lambda v: v is None or (is_number(v) and v > 0),
        "null or a positive number",
        "give a count of spectra (e.g. 400) or a fraction (e.g. 0.5)",
    ),
    positive_int(
        "ensemble.members", "1 trains one model, K > 1 a deep ensemble (e.g. ensemble.members=5)"
    ),
    Rule(
        "cpu_threads",
        lambda v: v is None or is_int(v, 1, 4096),
        "null or a positive integer",
        "e.g. cpu_threads=1",
    ),
    Rule(
        "trainer.max_epochs",
        lambda v: v is None or v == -1 or is_int(v, 1),
        "a positive integer (or -1)",
        "e.g. trainer.max_epochs=100",
    ),
    Rule(
        "ckpt_path",
        lambda v: v is None or (isinstance(v, str) and bool(v)),
        "null or a checkpoint path",
        "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt",
    ),
    *(
        Rule(key, lambda v: v is None or isinstance(v, bool), "true or false", f"e.g. {key}=true")
        for key in ("saliency", "log_model", "register")
    ),
    Rule(
        "observation.k_bins",
        lambda v: (
            v is None
            or (
                finite_numbers(v, positive=True)
                and len(v) >= 2
                and all(a < b for a, b in zip(v, v[1:], strict=False))
            )
        ),
        "null or at least two increasing positive k-bin centres",
        "e.g. observation.k_bins=[0.15,0.25,0.4,0.6]",
    ),
    Rule(
        "observation.k_units",
        lambda v: v in ("1/Mpc", "h/Mpc"),
        "'1/Mpc' or 'h/Mpc'",
        "the units of observation.k_bins, e.g. observation.k_units=h/Mpc",
    ),
    *(
        Rule(
            f"observation.{key}",
            lambda v: v is None or (is_number(v) and v >= 0),
            "null or a number >= 0 (1/Mpc)",
            f"e.g. observation.{key}={default}",
        )
        for key, default in (("min_k", 0.1), ("max_k", 1.0))
    ),
)

SIMULATE_RULES: tuple[Rule, ...] = (
    positive_int("simulation.n", "the size of the design, e.g. simulation.n=200"),
    positive_int("simulation.workers", "e.g. simulation.workers=2", hi=4096),
    positive_int(
        "simulation.n_threads", "OpenMP threads per worker, e.g. simulation.n_threads=1", hi=4096
    ),
    positive_int(
        "simulation.simulator.n_threads",
        "OpenMP threads per worker, e.g. simulation.n_threads=1",
        hi=4096,
    ),
    positive_int("simulation.sims_per_ic", "e.g. simulation.sims_per_ic=1"),
    positive_int(
        "simulation.num_shards", "e.g. simulation.num_shards=64 with simulation.shard=0..63"
    ),
    Rule(
        "simulation.shard",
        lambda v: is_int(v, 0),
        "an integer >= 0 (and < simulation.num_shards)",
        "e.g. simulation.shard=0",
    ),
    Rule(
        "simulation.base_seed",
        lambda v: is_int(v, 0, 2**32 - 1),
        "an integer in [0, 2**32)",
        "e.g. simulation.base_seed=1",
    ),
    Rule(
        "simulation.sampler",
        lambda v: v in ("uniform", "lhs", "fixed"),
        "'uniform', 'lhs' or 'fixed'",
        "e.g. simulation.sampler=uniform",
    ),
    redshift_list(
        "simulation.redshifts",
        "e.g. simulation.redshifts=[8.0] or simulation.redshifts=[7,8,9,10]",
    ),
)

PREDICT_RULES: tuple[Rule, ...] = (
    Rule(
        "ckpt_path",
        lambda v: isinstance(v, str) and bool(v),
        "a checkpoint file or ensemble directory",
        "pass the path train.py printed last",
    ),
    Rule(
        "input",
        lambda v: isinstance(v, str) and Path(v).is_file(),
        "an existing npz file (not a directory)",
        "give 21CMMC's npz with 'k' and 'delta' (e.g. input=data/examples/spectra_z8.npz)",
    ),
    writable_file("output"),
    Rule(
        "output",
        lambda v: not str(v).endswith(".json"),
        "a CSV path, not .json",
        "the metadata goes beside it as <output stem>.json: e.g. output=predictions.csv",
    ),
    Rule(
        "samples",
        lambda v: v is None or is_int(v, 0, 1_000_000),
        "an integer in [0, 1000000]",
        "the posterior samples per spectrum to write, e.g. samples=1000 (0: none)",
    ),
    Rule(
        "output",
        lambda v: not Path(v).with_name(f"{Path(v).stem}_samples.npz").is_dir(),
        "a path whose <stem>_samples.npz is not a directory",
        "choose another output=",
    ),
    Rule("plot", lambda v: v is None or isinstance(v, bool), "true or false", "e.g. plot=true"),
    SEED,
    Rule(
        "output",
        lambda v: _sidecar_free(Path(v).with_suffix(".json")),
        "a path whose <stem>.json is free or an earlier predictions sidecar",
        "choose another output= (that .json is a directory or a file predict.py did not write)",
    ),
)


def _sidecar_free(path: Path) -> bool:
    """Never overwrite a JSON file predict.py did not write (an ensemble's manifest.json, say)."""
    if not path.exists():
        return True
    if not path.is_file():
        return False
    try:
        earlier = json.loads(path.read_text())
        return isinstance(earlier, dict) and "predictions" in earlier
    except (ValueError, OSError, TypeError):
        return False
