"""Score a trained model, once, on simulations it never saw: ``python -m astrops.analysis.score``.

    python -m astrops.analysis.score MODEL --test-store DIR [--test-dataset NAME] [--json out.json]

MODEL is what ``train.py`` printed (a checkpoint or an ensemble directory). The test spectra go
through the data module the model was trained with — same redshifts, same observation (instrument
noise and k-range, one fixed realisation per spectrum from the training ``data.split_seed``) —
rebuilt from the plain values in the checkpoint's config, never from a ``_target_`` it names. The
training store is read only to rebuild that module (its path from the checkpoint, or ``--store``).
Prints R², and for probabilistic models the coverage of the 68 % / 95 % intervals, CRPS and
(Gaussian heads) NLL, per parameter; posterior summaries use 1 000 samples per spectrum drawn with
seed 0.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import torch

from astrops.parameters import ordered

ROWS = ("R2", "coverage68", "coverage95", "CRPS", "NLL", "sbc_p")


def held_out(
    model_path: str | Path,
    test_store: str | Path,
    test_dataset: str | None = None,
    store: str | Path | None = None,
) -> tuple[Any, Any]:
    """The model's :class:`~astrops.inference.Predictor` and a data module whose test split is
    every spectrum of the test store, observed as the model was trained to see them (set up, not
    yet predicted)."""
    from astrops.data import SpectraDataModule
    from astrops.inference import load_model

    predictor = load_model(model_path)
    data_cfg = dict((predictor.meta.get("config") or {}).get("data") or {})
    accepted = set(inspect.signature(SpectraDataModule.__init__).parameters) - {"self"}
    kwargs: dict[str, Any] = {k: v for k, v in data_cfg.items() if k in accepted}
    kwargs.update(test_store_dir=str(test_store), test_dataset=test_dataset, kfold=None, fold=0)
    if store is not None:
        kwargs["store_dir"] = str(store)
    if isinstance(kwargs.get("observation"), dict):
        kwargs["observation"] = relocated_observation(
            kwargs["observation"], predictor.meta.get("observation")
        )
    if not Path(str(kwargs.get("store_dir", ""))).is_dir():
        raise FileNotFoundError(
            f"the training store {kwargs.get('store_dir')!r} is not here: give --store "
            "(e.g. --store data/reference)"
        )
    dm = SpectraDataModule(**kwargs)
    dm.prepare()
    dm.setup()
    return predictor, dm


def relocated_observation(obs: dict[str, Any], recorded: Any) -> dict[str, Any]:
    """The observation config with its noise tables found again: a checkpoint records the absolute
    ``tables_dir`` of the machine and checkout that trained it. When that directory is gone, this
    project's ``data/noise/<name>`` is used if its tables hash equals the one the model recorded,
    else refused."""
    from astrops.simulation.sensitivity import tables_hash
    from astrops.tracking import project_root

    tables = Path(str(obs.get("tables_dir") or ""))
    if not obs.get("tables_dir") or tables.is_dir():
        return obs
    here = project_root() / "data" / "noise" / tables.name
    want = recorded.get("tables_hash") if isinstance(recorded, dict) else None
    if want and here.is_dir() and tables_hash(here) == want:
        return {**obs, "tables_dir": str(here)}
    why = "differ from the ones it was trained with" if here.is_dir() else "are missing"
    raise FileNotFoundError(
        f"the model's noise tables {tables} are not here and {here} {why}: copy the model's "
        "tables "
        f"there (or run `make noise-tables` if it was trained with this project's)"
    )


def predict_test(model, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The decoded test predictions, posterior summaries from :data:`TEST_SAMPLES` samples per
    spectrum drawn with ``seed`` (the same numbers on every call)."""
    from astrops.models.flow import TEST_SAMPLES, predict_in_chunks

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return predict_in_chunks(model, x, TEST_SAMPLES)


def score_model(
    model_path: str | Path,
    test_store: str | Path,
    test_dataset: str | None = None,
    store: str | Path | None = None,
) -> dict[str, float]:
    """``test/<metric>/<parameter>`` on every spectrum of the test store, plus ``n_test``."""
    from astrops.metrics import score

    predictor, dm = held_out(model_path, test_store, test_dataset, store)
    x, y = dm.tensors["test"]
    model = predictor.model
    dec = predict_test(model, x)
    results = score(
        dec,
        y,
        model.task.codec,
        predictor.parameters,
        "test",
        model.task.metric_options()["n_classes"],
    )
    return {**results, "n_test": float(len(y))}


def table(results: dict[str, float]) -> str:
    params = ordered(
        {k.split("/")[2] for k in results if k.startswith("test/") and k.count("/") == 2}
        - {"overall"}
    )
    rows = [m for m in ROWS if f"test/{m}/{params[0]}" in results]
    lines = ["| metric | " + " | ".join(params) + " |", "|---|" + "---|" * len(params)]
    lines += [
        f"| {m} | " + " | ".join(f"{results[f'test/{m}/{p}']:.4f}" for p in params) + " |"
        for m in rows
    ]
    return "\n".join(lines)


def held_out_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments every command that applies a model to a held-out store takes (score,
    diagnostics)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", help="a checkpoint or ensemble directory written by train.py")
    ap.add_argument(
        "--test-store", required=True, help="store holding simulations the model never saw"
    )
    ap.add_argument(
        "--test-dataset", default=None, help="dataset in that store (default: its only one)"
    )
    ap.add_argument(
        "--store", default=None, help="the training store, when not where the checkpoint says"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = held_out_parser("python -m astrops.analysis.score", __doc__)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    from astrops.store import StoreError

    if args.json and (Path(args.json).is_dir() or not Path(args.json).absolute().parent.is_dir()):
        print(
            f"error: --json {args.json}: give a file path in an existing directory",
            file=sys.stderr,
        )
        return 2
    # every refusal below (checkpoint, data, observation, store) is a ValueError or a missing file
    try:
        results = score_model(args.model, args.test_store, args.test_dataset, args.store)
    except (ValueError, StoreError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{int(results['n_test'])} test spectra from {args.test_store}\n{table(results)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
