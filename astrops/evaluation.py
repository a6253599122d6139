"""A trained model on simulations it never saw: the held-out data and the test predictions that
``python -m astrops score``, the calibration suite's command and the reference comparison share.

The test spectra go through the data module the model was trained with — same redshifts, same
observation (instrument noise and k-range, one fixed realisation per spectrum from the training
``data.split_seed``) — rebuilt from the plain values in the checkpoint's config, never from a
``_target_`` it names. The training store is read only to rebuild that module. Posterior summaries
use :data:`~astrops.models.flow.TEST_SAMPLES` samples per spectrum drawn with a fixed seed, so
every call gives the same numbers.
"""

from __future__ import annotations

import inspect
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
    from astrops.models.flow_predict import TEST_SAMPLES, predict_in_chunks

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
    return scored_test(model_path, test_store, test_dataset, store)[-1]


def scored_test(
    model_path: str | Path,
    test_store: str | Path,
    test_dataset: str | None = None,
    store: str | Path | None = None,
) -> tuple[Any, Any, dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
    """(predictor, data module, decoded test predictions, truths, ``test/...`` metrics with
    ``n_test``) of the model on every spectrum of the test store."""
    from astrops.metrics import score

    predictor, dm = held_out(model_path, test_store, test_dataset, store)
    x, y = dm.tensors["test"]
    model = predictor.model
    dec = predict_test(model, x)
    n_classes = model.task.metric_options()["n_classes"]
    results = score(dec, y, model.task.codec, predictor.parameters, "test", n_classes)
    return predictor, dm, dec, y, {**results, "n_test": float(len(y))}


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
