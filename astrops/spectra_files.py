"""What a user hands in and gets back: 21CMMC-format spectra (npz) checked against a model's
grid and noise, and plain prediction CSVs.

Spectra are read with ``allow_pickle=False`` and only numeric arrays are accepted, so nothing read
from disk can execute code; a CSV is a header and rows only (its metadata goes beside it).
"""

from __future__ import annotations

import csv
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from astrops.errors import InputError


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
    # a pickle file, random bytes, a truncated or broken zip, anything else
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{path} is not an npz file ({type(exc).__name__}): give an npz with 'k' and 'delta' "
            "as numpy.savez writes it"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(
            f"{path} is a single .npy array, not an npz: save k and delta with numpy.savez"
        )
    try:
        arrays = _numeric_arrays(z, path)
    # a zip broken inside, a damaged compressed member
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise InputError(
            f"{path} is a damaged npz ({type(exc).__name__}): write it again with numpy.savez"
        ) from None
    if with_errs:
        return arrays["k"], arrays["delta"], arrays.get("redshifts"), arrays.get("errs")
    return arrays["k"], arrays["delta"], arrays.get("redshifts")


def _numeric_arrays(z: np.lib.npyio.NpzFile, path: Path) -> dict[str, np.ndarray]:
    """The npz's ``k``, ``delta`` and (if present) ``redshifts`` and ``errs``, numbers only."""
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
    return arrays


def grid_refusal(k: np.ndarray, model_k: np.ndarray, observation: object) -> str:
    """The one line for a k grid that is not the model's, naming the model's grid (and, for an
    observation with its own k-bins, those bins in the units the observation gave them)."""
    given = f"k grid ({len(k)} bins, {k.min():.4g}..{k.max():.4g})"
    obs = observation
    if isinstance(obs, dict) and obs.get("k_bins") is not None:
        bins = ", ".join(f"{x:.4g}" for x in model_k)
        also = (
            f" = {', '.join(f'{x:.4g}' for x in obs['k_bins'])} h/Mpc"
            if obs.get("k_units") == "h/Mpc"
            else ""
        )
        return (
            f"{given} is not the model's: it was trained on {obs.get('name')}'s own k-bins "
            f"[{bins}] 1/Mpc{also}; give k in 1/Mpc and delta on exactly these bins"
        )
    return (
        f"{given} differs from the model's training grid ({len(model_k)} bins, "
        f"{model_k.min():.4g}..{model_k.max():.4g} 1/Mpc) at relative 1e-6: compute spectra with "
        "the same box (HII_DIM, BOX_LEN) and 21CMMC binning"
    )


def check_errs(
    errs: np.ndarray,
    n_k: int,
    redshifts: list[float],
    kept_bins: np.ndarray,
    noise_sigma: np.ndarray | None,
    meta: dict,
) -> None:
    """Measured 1σ (n_z, n_k) against the noise the model was trained with (``noise_sigma`` on
    its ``kept_bins``): refused in one line if more than 10 % apart, or if the model is
    noiseless."""
    n_z = len(redshifts)
    if noise_sigma is None:
        raise InputError(
            "the input has 'errs' but this model was trained on noiseless spectra "
            "(observation=none): apply a model trained for the instrument "
            "(train.py observation=...)"
        )
    if errs.shape not in ((n_z, n_k),) + (((n_k,),) if n_z == 1 else ()):
        raise InputError(
            f"'errs' has shape {errs.shape}: give (n_z, n_k) = ({n_z}, {n_k}), the 1σ per bin "
            "in mK²"
        )
    ratio = errs.reshape(n_z, n_k)[:, kept_bins] / noise_sigma
    if not np.all(np.abs(ratio - 1) <= 0.10):
        worst = float(np.nanmax(np.abs(ratio - 1)))
        observation = (meta.get("observation") or {}).get("observation", "?")
        raise InputError(
            f"'errs' differ from the noise this model was trained with by up to "
            f"{100 * worst:.0f} % (more than 10 %) in the bins it uses: it was trained for "
            f"another instrument or observing time ({observation})"
        )
