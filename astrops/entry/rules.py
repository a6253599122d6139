"""The rule tables of the entry points: every configuration value ``train.py``, ``simulate.py``,
``baselines.py`` and ``predict.py`` read, with what it must be and how to fix it.

:func:`astrops.validation.validate` checks a config against one of these tables before any work
(the entry policy calls it first), so a bad value is one line naming the key and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from astrops.limits import MAX_MEMBERS
from astrops.validation import (
    Rule,
    finite_numbers,
    in_open_unit,
    is_int,
    is_number,
    positive_int,
    redshift_list,
    writable_file,
)

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
        "ensemble.members",
        "1 trains one model, K > 1 a deep ensemble (e.g. ensemble.members=5)",
        hi=MAX_MEMBERS,
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
