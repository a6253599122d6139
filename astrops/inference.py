"""Apply a trained model to spectra in 21CMMC's format: ``astrops.load_model(path).predict(k,
delta)``.

Checkpoints are read with ``torch.load(weights_only=True)`` (no pickled code runs) and their parts
are rebuilt only through :func:`astrops.models.registry.build` (an explicit name → class table,
every key checked before anything is built), so a crafted checkpoint cannot name arbitrary
callables. Every loader — ``predict.py``, :func:`load_model`, ensemble members, resuming training —
reads a checkpoint through :func:`read_checkpoint`, and an ensemble directory through
:func:`astrops.checkpoints.load_ensemble`. The extra columns beside the values (a std, a class and
its probability) are the task head's to name (:meth:`astrops.models.tasks.Task.output_columns`).

Applying a model imports torch and numpy (and zuko, for flow heads) only: the model is a plain
:class:`~astrops.models.SpectrumModel` (no Lightning, MLflow or torchmetrics), and pandas loads on
the first :meth:`Predictor.predict` (``predict.py`` writes its CSV from :meth:`Predictor.columns`
with the standard library, byte for byte what ``DataFrame.to_csv(index=False)`` writes).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from astrops.checkpoints import InputError, load_ensemble, load_estimator, read_checkpoint
from astrops.models import Ensemble, SpectrumModel
from astrops.models.flow import CHUNK_SAMPLES, TEST_SAMPLES, predict_in_chunks

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "InputError",
    "Predictor",
    "load_model",
    "read_checkpoint",
    "read_spectra_npz",
    "write_csv",
]

log = logging.getLogger(__name__)
# posterior samples one call may return (1.2 GB of float64 parameter triples)
MAX_SAMPLES = 50_000_000
MAX_PLOTS = 200  # corner plots one predict.py call may draw (one figure per spectrum)


class Predictor:
    """A trained model plus the k grid and redshifts it expects."""

    def __init__(self, model: SpectrumModel | Ensemble, meta: dict):
        self.model, self.meta = model.eval(), meta
        self.k = np.asarray(meta["k"], dtype=np.float64)
        self.redshifts = [float(z) for z in meta["redshifts"]]
        self.parameters = list(meta["parameters"])
        self.kept_bins = np.asarray(meta["kept_bins"], dtype=int)
        # the prior box the model was trained on (older checkpoints: the class edges, which
        # train.py sets to it)
        edges = model.task.codec.edges.cpu().numpy()
        box = meta.get("prior_box") or {
            p: [edges[j, 0], edges[j, -1]] for j, p in enumerate(self.parameters)
        }
        self.prior_box = {p: (float(box[p][0]), float(box[p][1])) for p in self.parameters}
        # an observation model's 1σ noise on its kept bins (n_z, n_kept): observed input may be
        # negative
        sigma = meta.get("noise_sigma")
        self.noise_sigma = None if sigma is None else np.asarray(sigma, dtype=np.float64)

    def check(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        redshifts: np.ndarray | None,
        errs: np.ndarray | None = None,
    ) -> np.ndarray:
        """Validate and reshape input to (N, n_z, n_k)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size == 0 or np.ndim(delta) == 0:
            raise InputError(
                "k and delta are empty or scalars: give k (n_k,) and delta (n_k,), (N, n_k) or "
                "(N, n_z, n_k)"
            )
        if k.shape != self.k.shape or not np.allclose(k, self.k, rtol=1e-6):
            raise InputError(self._grid_refusal(k))
        n_z = len(self.redshifts)
        if redshifts is None:
            if n_z > 1:
                raise InputError(
                    f"this model was trained on redshifts {self.redshifts}: the input needs a "
                    "'redshifts' "
                    f"key and delta of shape (N, {n_z}, {len(k)})"
                )
            redshifts = np.asarray(self.redshifts)
        redshifts = np.atleast_1d(np.asarray(redshifts, dtype=np.float64))
        if redshifts.shape != (n_z,) or not np.allclose(redshifts, self.redshifts):
            raise InputError(
                f"input redshifts {redshifts.tolist()} differ from the model's {self.redshifts}"
            )
        d = np.asarray(delta, dtype=np.float64)
        if d.shape[-1] != len(k):
            raise InputError(f"delta has {d.shape[-1]} k-bins, k has {len(k)}")
        d = d.reshape(-1, n_z, len(k)) if d.ndim == 1 or (d.ndim == 2 and n_z > 1) else d
        if d.ndim == 2:
            d = d[:, None, :]
        if d.ndim != 3 or d.shape[1] != n_z:
            raise InputError(
                f"delta shape {np.shape(delta)} does not fit redshifts {self.redshifts}: "
                f"use (n_k,), (N, n_k) for one redshift or (n_z, n_k), (N, n_z, n_k)"
            )
        bad = ~np.isfinite(d[:, :, self.kept_bins])
        if bad.any():
            raise InputError(
                f"{int(bad.any(axis=(1, 2)).sum())} spectra have NaN/inf in k-bins the model uses "
                f"(bins {sorted(set(self.kept_bins[np.nonzero(bad)[2]].tolist()))})"
            )
        if self.noise_sigma is None and (d[:, :, self.kept_bins] < 0).any():
            raise InputError(
                "delta has negative values: Δ² is a power and must be >= 0 (mK²) for a model "
                "trained "
                "on noiseless spectra (a noise-subtracted measurement needs an observation= model)"
            )
        if errs is not None:
            self._check_errs(np.asarray(errs, dtype=np.float64), len(k))
        return d

    def _grid_refusal(self, k: np.ndarray) -> str:
        """The one line for a k grid that is not the model's, naming the model's grid (and, for an
        observation with its own k-bins, those bins in the units the observation gave them)."""
        given = f"k grid ({len(k)} bins, {k.min():.4g}..{k.max():.4g})"
        obs = self.meta.get("observation")
        if isinstance(obs, dict) and obs.get("k_bins") is not None:
            bins = ", ".join(f"{x:.4g}" for x in self.k)
            also = (
                f" = {', '.join(f'{x:.4g}' for x in obs['k_bins'])} h/Mpc"
                if obs.get("k_units") == "h/Mpc"
                else ""
            )
            return (
                f"{given} is not the model's: it was trained on {obs.get('name')}'s own k-bins "
                f"[{bins}] 1/Mpc{also}; "
                "give k in 1/Mpc and delta on exactly these bins"
            )
        return (
            f"{given} differs from the model's training grid ({len(self.k)} bins, "
            f"{self.k.min():.4g}.."
            f"{self.k.max():.4g} 1/Mpc) at relative 1e-6: compute spectra with the same box "
            "(HII_DIM, BOX_LEN) "
            "and 21CMMC binning"
        )

    def _check_errs(self, errs: np.ndarray, n_k: int) -> None:
        """Measured 1σ (n_z, n_k) against the noise the model was trained with: refused if > 10 %
        apart."""
        n_z = len(self.redshifts)
        if self.noise_sigma is None:
            raise InputError(
                "the input has 'errs' but this model was trained on noiseless spectra "
                "(observation=none): "
                "apply a model trained for the instrument (train.py observation=...)"
            )
        if errs.shape not in ((n_z, n_k),) + (((n_k,),) if n_z == 1 else ()):
            raise InputError(
                f"'errs' has shape {errs.shape}: give (n_z, n_k) = ({n_z}, {n_k}), the 1σ per bin "
                "in mK²"
            )
        ratio = errs.reshape(n_z, n_k)[:, self.kept_bins] / self.noise_sigma
        if not np.all(np.abs(ratio - 1) <= 0.10):
            worst = float(np.nanmax(np.abs(ratio - 1)))
            raise InputError(
                "'errs' differ from the noise this model was trained with by up to "
                f"{100 * worst:.0f} % "
                "(more than 10 %) in the bins it uses: it was trained for another instrument or "
                f"observing time ({self.meta.get('observation', {}).get('observation', '?')})"
            )

    def predict(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        redshifts: np.ndarray | None = None,
        errs: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """One row per spectrum: parameter values (class-centre values for classification) and
        extras.

        Values never leave the prior box the model was trained on: they are clipped to it, and the
        row is flagged (``out_of_distribution``) with the reason (``ood_reason``), as is a spectrum
        whose standardised features lie more than 6 training standard deviations out.
        """
        import pandas as pd  # on first use: applying a model does not need it (see columns)

        return pd.DataFrame(self.columns(k, delta, redshifts, errs))

    @torch.no_grad()
    def sample(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        n: int = 1000,
        redshifts: np.ndarray | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """(N, n, P) samples of each spectrum's posterior in physical units (probabilistic models:
        Gaussian heads and their ensembles, flows and flow ensembles), reproducible from
        ``seed``."""
        if not getattr(self.model.task, "probabilistic", False):
            raise InputError(
                f"this {self.model.task.kind} model has no posterior to sample (its spread, if "
                "any, is "
                "not an error bar): use a model trained with task=gaussian or task=flow"
            )
        d = self.check(k, delta, redshifts)
        if len(d) * int(n) > MAX_SAMPLES:
            raise InputError(
                f"{len(d)} spectra x {int(n)} samples is more than {MAX_SAMPLES:.0e} samples "
                "(each 3 "
                "float64): ask for fewer samples or split the input"
            )
        x = torch.as_tensor(np.nan_to_num(d, nan=0.0), dtype=torch.float32)
        out = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for chunk in x.split(max(1, CHUNK_SAMPLES // max(int(n), 1))):
                dec = predict_in_chunks(self.model, chunk, int(n))
                out.append(self.model.task.draw(dec, int(n)).numpy().astype(np.float64))
        return np.concatenate(out)

    @torch.no_grad()
    def columns(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        redshifts: np.ndarray | None = None,
        errs: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """:meth:`predict`'s table as named numpy columns in order, without pandas; ``errs`` (n_z,
        n_k), the measurement's 1σ, is optional and checked against the model's noise."""
        d = self.check(k, delta, redshifts, errs)
        x = torch.as_tensor(np.nan_to_num(d, nan=0.0), dtype=torch.float32)
        feats = self.model.transform(x)
        far = (feats.abs() > 6).any(dim=(1, 2)).numpy()
        if far.any():
            log.warning(
                "%d of %d spectra lie far outside the training distribution (|standardised "
                "feature| > 6): "
                "their predictions are extrapolations",
                int(far.sum()),
                len(x),
            )
        with torch.random.fork_rng(devices=[]):
            # a flow's Monte-Carlo summaries: the same input gives the same table
            torch.manual_seed(0)
            dec = predict_in_chunks(self.model, x, TEST_SAMPLES)
        values = dec["value"].numpy().astype(np.float64)
        # std, class/probability: the head's own
        extra = self.model.task.output_columns(dec, self.parameters)
        broken = ~np.isfinite(values).all(axis=1)
        for col in extra.values():
            broken |= ~np.isfinite(col)
        if broken.any():  # a diverged or damaged model: no number is better than a made-up one
            raise InputError(
                f"the model returns NaN/inf for {int(broken.sum())} of {len(values)} spectra: its "
                "weights "
                "are damaged or training diverged; use another checkpoint (e.g. the best, not "
                "last.ckpt)"
            )
        reasons: list[list[str]] = [["features beyond 6 training sd"] if f else [] for f in far]
        for j, p in enumerate(self.parameters):
            lo, hi = self.prior_box[p]
            for i in np.flatnonzero((values[:, j] < lo) | (values[:, j] > hi)):
                reasons[i].append(
                    f"{p} {values[i, j]:.4g} outside prior [{lo:g}, {hi:g}], clipped"
                )
            values[:, j] = np.clip(values[:, j], lo, hi)
        columns = {p: values[:, j] for j, p in enumerate(self.parameters)}
        columns.update(extra)
        columns["out_of_distribution"] = np.array([bool(r) for r in reasons], dtype=bool)
        columns["ood_reason"] = np.array(["; ".join(r) for r in reasons], dtype=object)
        return columns


def write_csv(columns: dict[str, np.ndarray], path: str | Path) -> None:
    """Write named columns as ``DataFrame(columns).to_csv(path, index=False)`` would, byte for
    byte, with the standard library (pandas' own conversion: ``astype(str)`` for numbers and
    booleans, NaN as an empty field; its csv dialect: minimal quoting, ``os.linesep`` line
    ends)."""
    cells = []
    for col in columns.values():
        a = np.asarray(col)
        if a.dtype.kind in "biuf":
            text = a.astype(str).astype(object)
            if a.dtype.kind == "f":
                text[np.isnan(a)] = ""
        else:
            text = np.array(["" if v is None else str(v) for v in a], dtype=object)
        cells.append(text)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=os.linesep, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(list(columns))
        writer.writerows(zip(*cells, strict=True))


def read_spectra_npz(path: str | Path, with_errs: bool = False) -> tuple:
    """(k, delta, redshifts or None[, errs or None]) from a 21CMMC-format npz, never unpickling
    anything."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"input {path} is a directory: give an npz file with 'k' and 'delta' "
            "(e.g. data/examples/spectra_z8.npz)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist: give an npz with 'k' and 'delta'")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # a pickle file, a truncated zip, anything else
        raise InputError(
            f"{path} is not an npz file ({type(exc).__name__}): give an npz with 'k' and 'delta' "
            "as numpy.savez writes it"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(
            f"{path} is a single .npy array, not an npz: save k and delta with numpy.savez"
        )
    with z:
        missing = [key for key in ("k", "delta") if key not in z.files]
        if missing:
            raise InputError(
                f"{path} lacks {missing} (it has {sorted(z.files)}): 21CMMC's format needs 'k' "
                "(n_k,) "
                "and 'delta'; multi-redshift input also 'redshifts'"
            )
        try:
            arrays = {key: z[key] for key in ("k", "delta", "redshifts", "errs") if key in z.files}
        except ValueError:  # object arrays are only readable by unpickling
            raise InputError(
                f"{path} holds pickled Python objects: refusing to load it "
                "(only plain numeric arrays are read)"
            ) from None
    for key, a in arrays.items():
        if not np.issubdtype(a.dtype, np.number):
            raise InputError(f"{path}: '{key}' has dtype {a.dtype}, not numbers")
    if with_errs:
        return arrays["k"], arrays["delta"], arrays.get("redshifts"), arrays.get("errs")
    return arrays["k"], arrays["delta"], arrays.get("redshifts")


def load_model(path: str | Path) -> Predictor:
    """Rebuild a model from a checkpoint written by ``train.py``, an ensemble from its directory,
    or either from a downloaded MLflow Model directory (its ``MLmodel`` checked first:
    :func:`mlflow_model_data`)."""
    path = Path(path)
    if path.is_dir() and (path / "MLmodel").is_file():
        path = mlflow_model_data(path)
    model, meta = load_ensemble(path) if path.is_dir() else load_estimator(path)
    return Predictor(model, meta)


LOADER_MODULE = "astrops.tracking.mlflow_model"


def mlflow_model_data(directory: Path) -> Path:
    """The checkpoint (or ensemble directory) inside an MLflow Model directory astrops logged,
    refusing an MLmodel that names anything else: MLflow's own loader would import whatever module,
    code path or pickle the file names; here the file is only read (YAML, safely) and its ``data``
    then goes through the same allowlisted loader as every checkpoint."""
    import yaml

    try:
        spec = yaml.safe_load((directory / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(
            f"{directory}/MLmodel is not readable YAML ({type(exc).__name__})"
        ) from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if (
        not isinstance(pyfunc, dict)
        or set(flavors) != {"python_function"}
        or pyfunc.get("loader_module") != LOADER_MODULE
        or pyfunc.get("code")
        or "python_model" in pyfunc
    ):
        raise InputError(
            f"{directory} is not an MLflow Model astrops logged (it must name only the "
            f"python_function flavour with loader_module {LOADER_MODULE}, no code paths and no "
            "python_model): refusing to load it"
        )
    data = (directory / str(pyfunc.get("data", ""))).resolve()
    if (
        not str(pyfunc.get("data", ""))
        or directory.resolve() not in data.parents
        or not data.exists()
    ):
        raise InputError(
            f"{directory}/MLmodel: 'data' must name the checkpoint or ensemble directory inside "
            "the model's own data/ folder"
        )
    return data
