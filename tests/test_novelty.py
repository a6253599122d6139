"""The out-of-distribution score (astrops.models.novelty): false alarms at the rate asked for,
wrong input found, kept in the checkpoint and checked on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

from astrops.entry.analysis import ood_check_main
from astrops.errors import InputError
from astrops.inference import load_model, read_checkpoint
from astrops.models.novelty import NoveltyScore


def _spectra(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 12) power-law spectra at two 'redshifts', amplitude and slope drawn from a box: a
    3-parameter family with a rising k-dependence, like Δ²."""
    k = np.linspace(0.1, 1.0, 12)
    amp, slope = rng.uniform(1, 30, (n, 1)), rng.uniform(0.5, 1.5, (n, 1))
    late = rng.uniform(0.2, 0.6, (n, 1))
    return np.stack([amp * k**slope * late, amp * k**slope], axis=1)


@pytest.fixture(scope="module")
def noisy_score():
    rng = np.random.default_rng(0)
    sigma = np.stack([np.linspace(0.05, 3, 12), np.linspace(0.2, 12, 12)])
    score = NoveltyScore.fit(_spectra(1500, rng), _spectra(200, rng), sigma, "delta", rng)
    fresh = _spectra(2000, rng)
    return score, fresh + sigma * rng.standard_normal(fresh.shape)


def test_false_alarms_at_the_rate_asked_for_and_wrong_input_flagged(noisy_score):
    score, good = noisy_score
    p, share = score.p_values(good)
    flagged = p < score.alpha
    # 1 % asked; 2 000 fresh spectra: binomial SE 0.22 %
    assert 0.002 < flagged.mean() < 0.02 and ((p > 0) & (p <= 1)).all()
    assert np.allclose(share.sum(axis=(1, 2)), 1.0)
    for wrong in (good * 10, good[:, :, ::-1], good[:, ::-1, :]):
        assert (score.p_values(wrong)[0] < score.alpha).mean() > 0.95


def test_the_reason_names_the_redshift_and_k_range(noisy_score):
    score, good = noisy_score
    bad = good[:5].copy()
    bad[:, 0, 8:] += 50.0  # excess power at high k of the first redshift only
    p, share = score.p_values(bad)
    reasons = score.reasons(p, share, [7.0, 10.0], np.linspace(0.1, 1.0, 12))
    assert all(r.startswith("unlike the training spectra (p=") for r in reasons)
    # the cells holding half the χ²: at z = 7, inside the k-range given the excess
    for r in reasons:
        lo, hi = map(float, r.split("z=7 k=")[1].split(" ")[0].split("-"))
        assert 0.755 <= lo <= hi <= 1.0 and "z=10" not in r, r
    assert score.reasons(np.array([0.5]), share[:1], [7.0, 10.0], np.ones(12)) == [""]


def test_meta_round_trip_and_damaged_blocks_refused(noisy_score):
    score, good = noisy_score
    back = NoveltyScore.from_meta(score.to_meta(), 24)
    assert np.array_equal(back.p_values(good)[0], score.p_values(good)[0])
    damaged = [
        {"kind": "mahalanobis"},
        {"calibration": score.calibration[::-1].tolist()},
        {"noise": [1.0] * 23},
        {"tau": [float("nan")] * 24},
        {"alpha": 0.7},
        {"reference": [[0.0] * 24] * 2001},
        {"space": "pickle"},
    ]
    for change in damaged:
        with pytest.raises(ValueError, match="ood"):
            NoveltyScore.from_meta({**score.to_meta(), **change}, 24)
    with pytest.raises(ValueError, match="not 25 numbers"):
        NoveltyScore.from_meta(score.to_meta(), 25)


def test_a_model_carries_its_score_and_predict_reports_it(dense_checkpoint, tmp_path, capsys):
    meta = read_checkpoint(dense_checkpoint)["astrops"]
    assert meta["ood"]["space"] == "features" and len(meta["ood"]["calibration"]) > 1000
    out = tmp_path / "ood.json"
    holdout = ROOT / "data" / "holdout"
    assert (
        ood_check_main([dense_checkpoint, "--test-store", str(holdout), "--json", str(out)]) == 0
    )
    got = json.loads(out.read_text())
    # noiseless z = 8 model, 1 000 held-out simulations: false alarms at about 1 %; wrong
    # input with a signal (0.05 < x_HI < 0.95) flagged
    assert got["in_distribution"]["all"]["n"] == 1000
    assert got["in_distribution"]["all"]["rate"] <= 0.03
    assert got["times10"]["informative"]["rate"] > 0.9
    assert got["reversed_k"]["informative"]["rate"] > 0.9
    assert "| times10 |" in capsys.readouterr().out
    predictor = load_model(dense_checkpoint)
    ex = np.load(ROOT / "data" / "examples" / "spectra_z8.npz")
    columns = predictor.columns(ex["k"], ex["delta"] * 10)
    far = columns["ood_score"] < predictor.novelty.alpha
    assert far.any() and all(r.startswith("unlike") for r in columns["ood_reason"][far])
    assert (columns["out_of_distribution"][far]).all()


def test_a_checkpoint_with_a_damaged_ood_block_is_refused(dense_checkpoint, tmp_path):
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    ckpt["astrops"]["ood"]["calibration"] = ckpt["astrops"]["ood"]["calibration"][::-1]
    torch.save(ckpt, tmp_path / "damaged.ckpt")
    with pytest.raises(InputError, match=r"\['ood'\]"):
        load_model(Path(tmp_path / "damaged.ckpt"))


def test_ood_check_refuses_a_model_without_a_score_in_one_line(capsys):
    old = ROOT / "tests" / "data" / "dense_tiny_before_split.ckpt"
    argv = [str(old), "--test-store", str(ROOT / "data" / "holdout")]
    assert ood_check_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "predates the OOD score" in err, err
