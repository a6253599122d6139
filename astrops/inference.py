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

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from astrops.checkpoints import load_ensemble, load_estimator, mlflow_model_data, read_checkpoint
from astrops.errors import InputError
from astrops.limits import MAX_SAMPLES
from astrops.models import Ensemble, SpectrumModel
from astrops.models.flow_predict import CHUNK_SAMPLES, TEST_SAMPLES, predict_in_chunks
from astrops.models.novelty import NoveltyScore
from astrops.spectra_files import check_errs, grid_refusal

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InputError", "Predictor", "load_model", "read_checkpoint"]

log = logging.getLogger(__name__)


class Predictor:
    """A trained model plus the k grid and redshifts it expects (what :func:`load_model` returns).

    Args:
        model: the plain model (or ensemble), put in eval mode.
        meta: the checkpoint's ``astrops`` metadata: ``k`` (1/Mpc), ``redshifts``,
            ``parameters``, ``kept_bins`` and, where recorded, ``prior_box`` and ``noise_sigma``.

    Attributes:
        k, redshifts, parameters: the input grid and the output columns' names.
        prior_box: parameter → (low, high), the priors the model was trained on.
        noise_sigma: an observation model's 1σ on its kept bins (n_z, n_kept), else None.
    """

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
        # the OOD score fitted at training (astrops.models.novelty); None in older checkpoints
        n_feat = len(self.redshifts) * len(self.kept_bins)
        self.novelty = None if "ood" not in meta else NoveltyScore.from_meta(meta["ood"], n_feat)

    def check(
        self,
        k: np.ndarray,
        delta: np.ndarray,
        redshifts: np.ndarray | None,
        errs: np.ndarray | None = None,
    ) -> np.ndarray:
        """The input as an (N, n_z, n_k) array, or :class:`InputError` in one line.

        Args:
            k: (n_k,) the model's own k grid in 1/Mpc.
            delta: Δ² in mK², shaped (n_k,), (N, n_k) for one redshift, or (n_z, n_k),
                (N, n_z, n_k).
            redshifts: (n_z,) the input's redshifts (needed when the model uses several).
            errs: (n_z, n_k) the measurement's 1σ, checked against the model's noise.
        """
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size == 0 or np.ndim(delta) == 0:
            raise InputError(
                "k and delta are empty or scalars: give k (n_k,) and delta (n_k,), (N, n_k) or "
                "(N, n_z, n_k)"
            )
        if k.shape != self.k.shape or not np.allclose(k, self.k, rtol=1e-6):
            raise InputError(grid_refusal(k, self.k, self.meta.get("observation")))
        n_z = len(self.redshifts)
        if redshifts is None:
            if n_z > 1:
                raise InputError(
                    f"this model was trained on redshifts {self.redshifts}: the input needs a "
                    f"'redshifts' key and delta of shape (N, {n_z}, {len(k)})"
                )
            redshifts = np.asarray(self.redshifts)
        redshifts = np.atleast_1d(np.asarray(redshifts, dtype=np.float64))
        if redshifts.shape != (n_z,) or not np.allclose(redshifts, self.redshifts):
            raise InputError(
                f"input redshifts {redshifts.tolist()} differ from the model's {self.redshifts}"
            )
        d = np.asarray(delta, dtype=np.float64)
        shapes = "(n_k,), (N, n_k) for one redshift or (n_z, n_k), (N, n_z, n_k) = "
        shapes += f"(N, {n_z}, {len(k)})"
        if d.shape[-1] != len(k):
            raise InputError(
                f"delta has shape {d.shape} and k has {len(k)} bins: the last axis of delta must "
                f"be the k-bins, so give {shapes}"
            )
        if d.size == 0:
            raise InputError(
                f"delta holds no spectra (shape {d.shape}): give at least one, shaped {shapes}"
            )
        d = d.reshape(-1, n_z, len(k)) if d.ndim == 1 or (d.ndim == 2 and n_z > 1) else d
        if d.ndim == 2:
            d = d[:, None, :]
        if d.ndim != 3 or d.shape[1] != n_z:
            raise InputError(
                f"delta shape {np.shape(delta)} does not fit redshifts {self.redshifts}: "
                f"use {shapes}"
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
                "trained on noiseless spectra (a noise-subtracted measurement needs an "
                "observation= model)"
            )
        if errs is not None:
            errs = np.asarray(errs, dtype=np.float64)
            check_errs(errs, len(k), self.redshifts, self.kept_bins, self.noise_sigma, self.meta)
        return d

    @torch.no_grad()
    def ood(self, d: np.ndarray, x: torch.Tensor) -> tuple[np.ndarray, list[list[str]]]:
        """(N,) the OOD p-value of each checked spectrum ``d`` (``x``: as a tensor) and its reason,
        if flagged (:mod:`astrops.models.novelty`); NaN and no reason without a fitted score."""
        if self.novelty is None:
            log.warning("this checkpoint predates the OOD score: ood_score is NaN")
            return np.full(len(d), np.nan), [[] for _ in range(len(d))]
        delta_space = self.novelty.space == "delta"
        g = d[:, :, self.kept_bins] if delta_space else self.model.transform(x).double().numpy()
        p, share = self.novelty.p_values(g)
        phrases = self.novelty.reasons(p, share, self.redshifts, self.k[self.kept_bins])
        if (n_far := int((p < self.novelty.alpha).sum())) > 0:
            log.warning(
                "%d of %d spectra are unlike the training ones: extrapolations", n_far, len(d)
            )
        return p, [[r] if r else [] for r in phrases]

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
        unlike the training spectra, noise included: ``ood_score``, a conformal p-value
        (:mod:`astrops.models.novelty`), below the model's false-alarm rate (default 0.01).

        Args: as :meth:`check`.

        Returns:
            A DataFrame with one column per parameter, the head's extra columns (``<p>_std``,
            quantiles ``<p>_median|lo68|hi68|lo95|hi95``, class probabilities) and
            ``ood_score``, ``out_of_distribution``, ``ood_reason``.
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
        """Samples of each spectrum's posterior (models with ``has_distribution``: Gaussian heads
        and their ensembles, flows and flow ensembles — the models the calibration suite
        checks).

        Args:
            k, delta, redshifts: as :meth:`check`.
            n: samples per spectrum.
            seed: the same seed gives the same samples.

        Returns:
            (N, n, P) float64 samples in physical units, parameters in ``self.parameters``
            order.
        """
        if not self.model.has_distribution:
            raise InputError(
                f"this {self.model.task.kind} model has no posterior to sample (its spread, if "
                "any, is not an error bar): use a model trained with task=gaussian or task=flow"
            )
        d = self.check(k, delta, redshifts)
        if len(d) * int(n) > MAX_SAMPLES:
            raise InputError(
                f"{len(d)} spectra x {int(n)} samples is more than {MAX_SAMPLES:.0e} samples "
                "(each 3 float64): ask for fewer samples or split the input"
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
        p_ood, reasons = self.ood(d, x)
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
                "weights are damaged or training diverged; use another checkpoint (e.g. the "
                "best, not last.ckpt)"
            )
        for j, p in enumerate(self.parameters):
            lo, hi = self.prior_box[p]
            for i in np.flatnonzero((values[:, j] < lo) | (values[:, j] > hi)):
                v = values[i, j]
                reasons[i].append(f"{p} {v:.4g} outside prior [{lo:g}, {hi:g}], clipped")
            values[:, j] = np.clip(values[:, j], lo, hi)
        columns = {p: values[:, j] for j, p in enumerate(self.parameters)}
        columns.update(extra)
        columns["ood_score"] = p_ood
        columns["out_of_distribution"] = np.array([bool(r) for r in reasons], dtype=bool)
        columns["ood_reason"] = np.array(["; ".join(r) for r in reasons], dtype=object)
        return columns


def load_model(path: str | Path) -> Predictor:
    """Rebuild a trained model from disk, building only from the registry's allowlist.

    Args:
        path: a checkpoint written by ``train.py``, an ensemble directory, or a downloaded MLflow
            Model directory of either (its ``MLmodel`` checked first: :func:`mlflow_model_data`).

    Returns:
        A :class:`Predictor`; ``load_model(path).predict(k, delta)`` is a DataFrame of estimates.

    Raises:
        InputError: a file that is not a model astrops wrote, in one line naming the fix.
    """
    path = Path(path)
    if path.is_dir() and (path / "MLmodel").is_file():
        path = mlflow_model_data(path)
    model, meta = load_ensemble(path) if path.is_dir() else load_estimator(path)
    return Predictor(model, meta)
