"""predict.py writes a plain CSV (header + rows) and its metadata beside it; values stay in the
prior box."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, run_entry

from astrops.checkpoints import save_ensemble
from astrops.errors import InputError
from astrops.inference import load_model
from astrops.store import Store

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]


def holdout_spectra(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    ds = Store(ROOT / "data" / "holdout").dataset()
    recs = ds.load()
    z8 = int(np.flatnonzero(np.isclose(ds.redshifts, 8.0))[0])
    return ds.k, recs.delta[:n, z8]


def test_plain_csv_with_json_sidecar_and_prior_box_clipping(dense_checkpoint, tmp_path):
    k, delta = holdout_spectra()
    np.savez(tmp_path / "spectra.npz", k=k, delta=delta)
    plain = load_model(dense_checkpoint).predict(k, delta)
    assert list(plain.columns) == [*PARAMS, "ood_score", "out_of_distribution", "ood_reason"]

    # the same model with a prior box for ζ far narrower than its predictions: every row must be
    # clipped
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    lo = float(plain["HII_EFF_FACTOR"].max()) + 1.0
    ckpt["astrops"]["prior_box"]["HII_EFF_FACTOR"] = [lo, lo + 0.5]
    narrow = tmp_path / "narrow.ckpt"
    torch.save(ckpt, narrow)
    out = tmp_path / "predictions.csv"
    proc = run_entry(
        "predict.py",
        f"ckpt_path={narrow}",
        f"input={tmp_path / 'spectra.npz'}",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/h",
    )
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert not out.read_text().startswith("#")
    df = pd.read_csv(out)
    assert list(df.columns) == [*PARAMS, "ood_score", "out_of_distribution", "ood_reason"] and len(
        df
    ) == len(delta)
    assert (df["HII_EFF_FACTOR"] == lo).all() and df["out_of_distribution"].all()
    assert (
        df["ood_reason"].str.contains(r"HII_EFF_FACTOR [\d.]+ outside prior \[.*\], clipped").all()
    )
    # others untouched
    np.testing.assert_allclose(df["ION_Tvir_MIN"], plain["ION_Tvir_MIN"], rtol=1e-6)

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["checkpoint"] == str(narrow) and meta["n_spectra"] == len(delta)
    assert meta["parameters"]["HII_EFF_FACTOR"]["prior"] == [lo, lo + 0.5]
    assert meta["parameters"]["ION_Tvir_MIN"]["unit"] == "log10(K)"
    assert meta["columns"] == list(df.columns) and meta["lineage"]["dataset_name"].startswith(
        "reference"
    )


def test_a_model_returning_nan_is_refused_not_written(dense_checkpoint, tmp_path):
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    head = next(
        k for k in ckpt["state_dict"] if k.startswith("task.head.") and k.endswith("weight")
    )
    ckpt["state_dict"][head] = torch.full_like(ckpt["state_dict"][head], float("nan"))
    torch.save(ckpt, tmp_path / "diverged.ckpt")
    k, delta = holdout_spectra(3)
    with pytest.raises(InputError, match="returns NaN/inf for 3 of 3 spectra"):
        load_model(tmp_path / "diverged.ckpt").predict(k, delta)


def test_a_classification_model_returning_nan_is_refused_too(dense_checkpoint, tmp_path):
    """NaN logits still argmax to a finite class centre: the NaN probability column must catch
    them."""
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    meta, state, n = ckpt["astrops"], ckpt["state_dict"], ckpt["astrops"]["n_classes"]
    meta["task"] = {"_target_": "astrops.models.tasks.ClassificationTask", "calibrate": False}
    hidden = state["task.head.weight"].shape[1]
    state["task.head.weight"] = torch.full((len(PARAMS) * n, hidden), float("nan"))
    state["task.head.bias"] = torch.zeros(len(PARAMS) * n)
    torch.save(ckpt, tmp_path / "nan_classes.ckpt")
    k, delta = holdout_spectra(3)
    with pytest.raises(InputError, match="returns NaN/inf for 3 of 3 spectra"):
        load_model(tmp_path / "nan_classes.ckpt").predict(k, delta)


def test_ensemble_of_regression_members_writes_its_calibrated_spread(dense_checkpoint, tmp_path):
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    # a second, shifted member
    ckpt["state_dict"]["task.head.bias"] = ckpt["state_dict"]["task.head.bias"] + 0.5
    torch.save(ckpt, tmp_path / "shifted.ckpt")
    scale = torch.tensor([4.0, 1.0, 0.25])
    directory = save_ensemble(
        tmp_path / "ens", [dense_checkpoint, tmp_path / "shifted.ckpt"], {"var_scale": scale}, {}
    )
    k, delta = holdout_spectra()
    df = load_model(directory).predict(k, delta)
    assert list(df.columns) == [
        *PARAMS,
        *(f"{p}_std" for p in PARAMS),
        "ood_score",
        "out_of_distribution",
        "ood_reason",
    ]
    one, two = (
        load_model(c).model.predict_physical(torch.tensor(delta[:, None], dtype=torch.float32))[
            "value"
        ]
        for c in (dense_checkpoint, tmp_path / "shifted.ckpt")
    )
    # std of two values, variance-scaled
    spread = (two - one).abs().numpy() / 2 * scale.sqrt().numpy()
    for j, p in enumerate(PARAMS):
        assert df[f"{p}_std"].dtype == np.float64
        np.testing.assert_allclose(df[f"{p}_std"], spread[:, j], rtol=1e-5)
