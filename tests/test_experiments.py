"""The observation experiments (issue 17) compose as documented, and the asinh feature transform
keeps what a noisy measurement says below zero."""

from __future__ import annotations

from pathlib import Path

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


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_validates_and_builds_its_data_module(experiment):
    """Each conf/experiment/*.yaml: composes with train.yaml, passes train.py's rule table, names
    itself in run_name and tags, points at stores and noise tables that ship, and its data module
    is built from it (Hydra's instantiate, as train.py does; nothing is read yet)."""
    from hydra.utils import instantiate

    from astrops.entry.rules import TRAIN_RULES
    from astrops.validation import validate

    cfg = compose_cfg("train", [f"experiment={experiment}"])
    validate(cfg, TRAIN_RULES)
    assert cfg.tags.experiment == experiment
    # the seed's reproduction keeps train.py's <model>-<task> run names (four runs, one config)
    assert cfg.run_name == (
        experiment if experiment != "seed_reproduction" else f"{cfg.model_name}-{cfg.task_config}"
    )
    for key in ("store_dir", "test_store_dir", "extra_train_store_dir"):
        if cfg.data.get(key):
            assert Path(cfg.data[key]).is_dir(), cfg.data[key]
    dm = instantiate(cfg.data)
    assert dm.redshifts == [float(z) for z in cfg.data.redshifts]
    assert (dm.observation is None) == (cfg.observation.name == "none")
    if dm.observation is not None:  # its noise tables ship with the project
        assert Path(cfg.data.observation.tables_dir).is_dir()
    # a head the registry builds, or the emulator's inverse direction (train.py dispatches on it)
    assert cfg.task.get("emulates") or cfg.task._target_.startswith("astrops.models.")
