"""Every trained model as an MLflow Model: ``mlflow.pyfunc.load_model(uri).predict(df)`` and
``mlflow models predict -m <uri> -i spectra.csv -t csv --env-manager local`` return predict.py's
columns (:meth:`astrops.inference.Predictor.predict`).

Why a ``loader_module`` and no ``python_model``: MLflow stores a ``PythonModel`` as a cloudpickle
(``python_model.pkl``), and loading one runs whatever code the pickle names. Here the model's data
are the very checkpoint (or ensemble directory) predict.py reads, copied to the model's ``data/``;
MLflow loads it by importing this module and calling :func:`_load_pyfunc`, which reads it through
:func:`astrops.inference.load_model` (``torch.load(weights_only=True)``, the registry's name →
class table): nothing is unpickled as code.

Input: one row per spectrum, one ``double`` column per redshift and *kept* k-bin, named
``z<z:g>_k<i>`` (Δ² in mK²; ``i`` the bin's index in the model's full k grid, whose values in 1/Mpc
are the MLmodel's ``metadata.k``), e.g. ``z8_k3``. Bins the model does not use have no column.
Through MLflow the signature is enforced first (a missing column is refused, an extra one dropped
with a warning); :meth:`PyfuncPredictor.predict` itself refuses missing, extra and non-numeric
columns.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from astrops.errors import InputError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from astrops.data import SpectraDataModule
    from astrops.inference import Predictor
    from astrops.tracking.run import TrackedRun

log = logging.getLogger(__name__)

ARTIFACT = "model"  # the logged model's name: runs:/<run id>/model
EXAMPLES = 3  # test spectra in the input example
REQUIREMENTS = ("torch", "lightning", "numpy", "pandas", "mlflow", "astrops")


def input_columns(redshifts: list[float], kept_bins: list[int] | np.ndarray) -> list[str]:
    """``z<z:g>_k<i>`` for every redshift (outer) and kept bin ``i`` of the full k grid (inner)."""
    return [f"z{float(z):g}_k{int(i)}" for z in redshifts for i in kept_bins]


def _listed(names: list[str], most: int = 40) -> str:
    return (
        str(names)
        if len(names) <= most
        else f"{names[: most // 2]} ... {names[-2:]} ({len(names)} in all)"
    )


class PyfuncPredictor:
    """What :func:`_load_pyfunc` returns: a :class:`~astrops.inference.Predictor` behind a
    DataFrame."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.columns = input_columns(predictor.redshifts, predictor.kept_bins)

    def frame(self, delta: np.ndarray) -> pd.DataFrame:
        """Spectra (N, n_z, n_k) on the model's full k grid as the input DataFrame (kept bins
        only)."""
        d = np.asarray(delta, dtype=np.float64).reshape(
            -1, len(self.predictor.redshifts), len(self.predictor.k)
        )
        return pd.DataFrame(
            d[:, :, self.predictor.kept_bins].reshape(len(d), -1), columns=self.columns
        )

    def delta(self, model_input: Any) -> np.ndarray:
        """The input DataFrame as (N, n_z, n_k), NaN in the bins the model does not use."""
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        have = [str(c) for c in df.columns]
        missing, extra = (
            [c for c in self.columns if c not in have],
            [c for c in have if c not in self.columns],
        )
        twice = sorted({c for c in have if have.count(c) > 1})
        if missing or extra or twice:
            wrong = ", ".join(
                f"{what} {_listed(cols)}"
                for what, cols in (
                    ("missing", missing),
                    ("unexpected", extra),
                    ("repeated", twice),
                )
                if cols
            )
            raise InputError(
                f"input columns {wrong}; expected exactly {_listed(self.columns)} (z<z>_k<i>: Δ² "
                "in mK² "
                "at redshift z, k-bin i of the model's k grid, metadata 'k' of the MLmodel)"
            )
        df = df.set_axis(have, axis=1)[self.columns]
        wrong = [
            c
            for c in self.columns
            if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
        ]
        if wrong:
            raise InputError(
                f"input columns {_listed(wrong)} are not numeric: every column of "
                f"{_listed(self.columns)} "
                "is Δ² in mK² (a number)"
            )
        p = self.predictor
        d = np.full((len(df), len(p.redshifts), len(p.k)), np.nan)
        d[:, :, p.kept_bins] = df.to_numpy(dtype=np.float64).reshape(
            len(df), len(p.redshifts), len(p.kept_bins)
        )
        return d

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """predict.py's columns: parameter values, std or class/prob where the model has them, OOD
        flags."""
        p = self.predictor
        return p.predict(p.k, self.delta(model_input), np.asarray(p.redshifts))


def _load_pyfunc(data_path: str) -> PyfuncPredictor:
    """MLflow's entry point for ``loader_module``: the safe checkpoint or ensemble directory in
    ``data/``."""
    from astrops.inference import load_model

    return PyfuncPredictor(load_model(data_path))


def requirements() -> list[str]:
    """The installed versions, without local labels (``+cpu``) so that pip can install them from
    PyPI."""
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


def model_metadata(predictor: Predictor) -> dict[str, Any]:
    """What the MLmodel says about the model: its grid and columns, what it predicts, where it came
    from."""
    meta = predictor.meta
    return {
        "astrops_version": version("astrops"),
        "kind": "ensemble" if "ensemble" in meta else "network",
        "input_columns": "z<z:g>_k<i>: Delta^2 (mK^2) at redshift z, k-bin i of 'k' (1/Mpc); kept "
        "bins only",
        "k": [float(x) for x in predictor.k],
        "redshifts": predictor.redshifts,
        "kept_bins": [int(i) for i in predictor.kept_bins],
        "parameters": predictor.parameters,
        "prior_box": {p: list(v) for p, v in predictor.prior_box.items()},
        "model_name": str(meta.get("model_name", "")),
        "task_config": str(meta.get("task_config", "")),
        "mlflow_run_id": meta.get("mlflow_run_id"),
    }


def registered_name(meta: dict, ensemble: bool = False) -> str:
    """``astrops-<model>-<task>`` (``-ensemble`` for ensembles): the default registered model
    name."""
    parts = [str(meta.get("model_name") or "model"), str(meta.get("task_config") or "task")]
    return "-".join(["astrops", *parts, *(["ensemble"] if ensemble else [])])


@contextmanager
def _restored(env: str | None) -> Iterator[None]:
    try:
        yield
    finally:
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def log_mlflow_model(
    run: TrackedRun,
    path: str | Path,
    predictor: Predictor,
    example_delta: np.ndarray,
    register: bool = False,
    name: str | None = None,
    lineage: dict | None = None,
) -> str:
    """Log ``path`` (a checkpoint file or an ensemble directory, loaded as ``predictor``) as the
    run's MLflow Model ``model`` with signature, input example (the first spectra of
    ``example_delta``, (N, n_z, n_k)), pinned requirements and metadata; with ``register``, also a
    version of registered model ``name`` (default :func:`registered_name`) tagged with ``lineage``.
    Returns the model's URI (``models:/<id>``)."""
    import mlflow
    from mlflow.models import Model, infer_signature
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    pyfunc = PyfuncPredictor(predictor)
    example = pyfunc.frame(np.asarray(example_delta)[:EXAMPLES])
    # the integer columns are outputs (classes): never missing, never enforced
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        # inputs double, outputs predict's dtypes
        signature = infer_signature(example, pyfunc.predict(example))
    tags = {k: str(v) for k, v in (lineage or {}).items()}
    metadata = model_metadata(predictor)
    # set_tracking_uri(None) on the way out would drop it
    env = os.environ.get("MLFLOW_TRACKING_URI")
    # Model.log, the registry follow the global URI
    with _restored(env), _use_tracking_uri(run.tracking_uri):
        # created here in the run's experiment: Model.log alone would put it in the active
        # (Default) one
        source = run.client.get_run(run.run_id)
        logged = run.client.create_logged_model(
            source.info.experiment_id, ARTIFACT, run.run_id, tags=tags, params=source.data.params
        )
        info = Model.log(
            None,
            mlflow.pyfunc,
            run_id=run.run_id,
            model_id=logged.model_id,
            loader_module=__name__,
            data_path=str(path),
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
            metadata=metadata,
        )
        run.set_tag("mlflow_model", info.model_uri)
        if register:
            name = name or registered_name(predictor.meta, metadata["kind"] == "ensemble")
            version_ = mlflow.register_model(
                info.model_uri,
                name,
                tags={**tags, "mlflow_run_id": run.run_id, "kind": metadata["kind"]},
            )
            run.set_tag("registered_model", f"models:/{name}/{version_.version}")
            print(
                f"registered MLflow model {name} version {version_.version} "
                f"(models:/{name}/{version_.version})"
            )
    return info.model_uri


def log_trained_model(
    cfg: DictConfig, run: TrackedRun | None, path: str | Path, dm: SpectraDataModule
) -> str | None:
    """The training hook: with ``log_model`` (default true) log ``path`` (a network's calibrated
    best checkpoint or an ensemble directory) as it loads for predict.py, examples from the test
    split; with ``register`` also register it (``registered_model_name``, default
    :func:`registered_name`)."""
    if run is None or not path or not cfg.get("log_model", True):
        if cfg.get("register", False) and path:
            log.warning(
                "register=true without an MLflow run (logger=%s): nothing registered",
                ",".join(cfg.get("logger") or {}) or "none",
            )
        return None
    import time

    from astrops.inference import load_model

    t0 = time.perf_counter()
    uri = log_mlflow_model(
        run,
        path,
        load_model(path),
        dm.delta[dm.test_idx],
        bool(cfg.get("register", False)),
        cfg.get("registered_model_name"),
        dm.lineage(),
    )
    log.debug("MLflow Model %s logged in %.2f s", uri, time.perf_counter() - t0)
    return uri
