"""Saliency on a synthetic problem with a known answer: each parameter reads fixed (z, k) bins
only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrops.analysis.saliency import (
    compute_saliency,
    input_gradients,
    permutation_importance,
    saliency_figure,
)
from astrops.models import (
    ClassificationTask,
    CNNBackbone,
    DenseBackbone,
    GaussianTask,
    ParameterEstimator,
    RegressionTask,
    SpectrumTransform,
    TargetCodec,
)

N_Z, N_K, N = 2, 10, 1200
PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
RANGES = np.array([[5.0, 200.0], [4.0, 6.0], [5.0, 20.0]])
# parameter -> the (z, k-bin) features it is a function of
RELEVANT = {0: [(0, 3)], 1: [(1, 7)], 2: [(0, 5), (1, 5)]}


def synthetic(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw Δ² with i.i.d. log10 power per (z, k); each parameter linear in its relevant log
    powers."""
    rng = np.random.default_rng(seed)
    logp = rng.uniform(0.0, 2.0, size=(N, N_Z, N_K))
    # in [0, 1]
    u = np.stack(
        [logp[:, 0, 3] / 2, logp[:, 1, 7] / 2, (logp[:, 0, 5] + logp[:, 1, 5]) / 4], axis=1
    )
    y = RANGES[:, 0] + u * (RANGES[:, 1] - RANGES[:, 0])
    return (10.0**logp).astype(np.float32), y.astype(np.float32)


def build(
    task_cls, backbone: str, delta: np.ndarray, y: np.ndarray, n_classes: int = 10
) -> ParameterEstimator:
    transform = SpectrumTransform.fit(delta, np.arange(N_K), "log10", True)
    edges = np.stack([np.linspace(lo, hi, n_classes + 1) for lo, hi in RANGES])
    codec = TargetCodec.fit(y, edges, True)
    net = (
        DenseBackbone((N_Z, N_K), hidden=[32])
        if backbone == "dense"
        else CNNBackbone((N_Z, N_K), channels=[8, 8], dense=[16])
    )
    task = task_cls(codec, net.out_features)
    meta = {"k": np.geomspace(0.05, 1.5, N_K).tolist(), "redshifts": [8.0, 9.0]}
    return ParameterEstimator(net, task, transform, PARAMS, train_metrics=False, meta=meta)


def fit(
    model: ParameterEstimator, delta: np.ndarray, y: np.ndarray, steps: int
) -> ParameterEstimator:
    x, t = torch.as_tensor(delta), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.task.loss(model(x), t).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def regression():
    torch.manual_seed(0)
    delta, y = synthetic(0)
    model = fit(build(RegressionTask, "dense", delta, y), delta, y, steps=400)
    test_delta, test_y = synthetic(1)
    return model, torch.as_tensor(test_delta), torch.as_tensor(test_y)


def test_regression_finds_the_relevant_bins(regression):
    model, delta, y = regression
    model.eval()
    r2 = model.evaluate(delta, y, "test")
    # the premise: the model learned the map
    assert min(r2[f"test/R2/{p}"] for p in PARAMS) > 0.95, r2
    grad = input_gradients(model, delta)
    perm = permutation_importance(model, delta, y, n_repeats=3, seed=0)
    assert grad.shape == perm.shape == (3, N_Z, N_K)
    assert np.isfinite(grad).all() and np.isfinite(perm).all()
    for p, bins in RELEVANT.items():
        for score in (grad[p], perm[p]):
            top = {
                np.unravel_index(i, score.shape)
                for i in np.argsort(score, axis=None)[::-1][: len(bins)]
            }
            assert top == set(bins), (PARAMS[p], score)
        irrelevant = np.ones((N_Z, N_K), bool)
        irrelevant[tuple(np.array(bins).T)] = False
        assert np.abs(perm[p][irrelevant]).max() < 0.05
        # shuffling a feature the parameter needs costs real R²
        assert perm[p][~irrelevant].min() > 0.2
    # known magnitudes: θ/σ_θ equals one standardised feature (slope 1), or their sum over √2
    # (slopes 1/√2); shuffling the only input of a parameter leaves R² = 1 - 2 = -1, a drop of 2
    assert grad[0, 0, 3] == pytest.approx(1.0, abs=0.1) and grad[1, 1, 7] == pytest.approx(
        1.0, abs=0.1
    )
    assert grad[2, :, 5] == pytest.approx([2**-0.5] * 2, abs=0.1)
    assert perm[0, 0, 3] == pytest.approx(2.0, abs=0.2) and perm[1, 1, 7] == pytest.approx(
        2.0, abs=0.2
    )


def test_permutation_is_seeded(regression):
    model, delta, y = regression
    a = permutation_importance(model, delta[:300], y[:300], n_repeats=2, seed=3)
    b = permutation_importance(model, delta[:300], y[:300], n_repeats=2, seed=3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", [True, False])
def test_model_mode_is_restored(regression, mode):
    model, delta, y = regression
    model.train(mode)
    input_gradients(model, delta[:50])
    assert model.training is mode
    permutation_importance(model, delta[:50], y[:50], n_repeats=1)
    assert model.training is mode
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_figure_and_table(regression):
    model, delta, y = regression
    fig, table = compute_saliency(model, delta[:300], y[:300], n_repeats=1)
    assert len(fig.axes) == len(PARAMS) * 2
    assert all(ax.get_xscale() == "log" and ax.get_xlabel() == "k [1/Mpc]" for ax in fig.axes)
    assert all(len(ax.get_lines()) >= N_Z for ax in fig.axes)
    json.dumps(table)  # plain types only: what mlflow.log_dict needs
    assert (
        np.array(table["gradient"]).shape == np.array(table["permutation"]).shape == (3, N_Z, N_K)
    )
    assert table["top"]["ION_Tvir_MIN"]["gradient"][0][:2] == [9.0, pytest.approx(table["k"][7])]
    fig2 = saliency_figure(
        np.zeros((1, 1, 4)), np.zeros((1, 1, 4)), np.arange(1.0, 5.0), [8.0], ["x"]
    )
    assert len(fig2.axes) == 2


@pytest.mark.parametrize(
    "task_cls,backbone",
    [
        (ClassificationTask, "dense"),
        (RegressionTask, "cnn"),
        (ClassificationTask, "cnn"),
        (GaussianTask, "dense"),
    ],
)
def test_other_tasks_and_backbones(task_cls, backbone):
    torch.manual_seed(0)
    delta, y = synthetic(2)
    model = fit(build(task_cls, backbone, delta[:400], y[:400]), delta[:400], y[:400], steps=30)
    x, t = torch.as_tensor(delta[400:700]), torch.as_tensor(y[400:700])
    grad = input_gradients(model, x)
    perm = permutation_importance(model, x, t, n_repeats=2)
    assert grad.shape == perm.shape == (3, N_Z, N_K)
    assert np.isfinite(grad).all() and np.isfinite(perm).all()
    # classification: the softmax expectation carries gradients
    assert (grad.sum(axis=(1, 2)) > 0).all()
    assert model.training  # fit left it training; saliency must not change that
