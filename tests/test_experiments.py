"""The observation experiments (issue 17) compose as documented, and the asinh feature transform
keeps what a noisy measurement says below zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_cfg

from astrops.models.transforms import SpectrumTransform

MULTIZ = [7.0, 8.0, 9.0, 10.0]


@pytest.mark.parametrize(
    "experiment, observation, redshifts, task",
    [
        ("hera350_multiz", "hera350_1000h", MULTIZ, "regression"),
        ("hera350_multiz_uncertainty", "hera350_1000h", MULTIZ, "gaussian"),
        ("hera350_z8", "hera350_1000h", [8.0], "gaussian"),
        ("ska_low_multiz", "ska_low_1000h", MULTIZ, "gaussian"),
    ],
)
def test_each_observation_experiment_composes(experiment, observation, redshifts, task):
    cfg = compose_cfg("train", [f"experiment={experiment}"])
    assert cfg.observation.name == observation and cfg.data.observation.name == observation
    assert (
        ROOT / "data/noise" / observation
    ).is_dir() and cfg.data.observation.tables_dir.endswith(observation)
    assert [float(z) for z in cfg.data.redshifts] == redshifts and cfg.ensemble.members == 5
    assert cfg.task._target_.split(".")[-1].lower().startswith(task[:5])
    assert (
        cfg.data.feature_transform == "raw"
        and cfg.data.test_dataset
        and "holdout" in cfg.data.test_store_dir
    )
    assert cfg.run_name == experiment and cfg.tags.experiment == experiment
    assert list(cfg.model.backbone.hidden) == [256, 256, 256, 256]


def test_asinh_features_keep_the_sign_and_scale_with_the_noise():
    rng = np.random.default_rng(0)
    sigma = np.array([[0.5, 2.0, 8.0]])
    delta = rng.lognormal(0.0, 2.0, size=(200, 1, 3)) + sigma * rng.standard_normal((200, 1, 3))
    assert (delta < 0).any()
    t = SpectrumTransform.fit(delta, np.arange(3), "asinh", standardize=False, noise_sigma=sigma)
    x = t(torch.as_tensor(delta, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(x, np.arcsinh(delta / sigma), rtol=1e-5, atol=1e-6)
    order = np.argsort(delta[:, 0, 0])
    # monotone: negative values stay ordered, not clipped
    assert (np.diff(x[order, 0, 0]) >= 0).all()
    floored = SpectrumTransform.fit(delta, np.arange(3), "log10", standardize=False)
    assert len(
        np.unique(floored(torch.as_tensor(delta, dtype=torch.float32)).numpy()[:, 0, 0])
    ) < len(np.unique(x[:, 0, 0]))


def test_a_checkpoint_saved_before_asinh_existed_still_loads(dense_checkpoint, tmp_path):
    from astrops.checkpoints import load_estimator

    ckpt = torch.load(dense_checkpoint, weights_only=True)
    del ckpt["state_dict"]["transform.asinh"]  # as written before the asinh transform was added
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    model, _ = load_estimator(old)
    assert bool(model.transform.log10) and not bool(model.transform.asinh)
