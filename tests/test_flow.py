"""The flow head (issue 18): a toy with a closed-form posterior, the box support, recalibration,
sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from astrops.models.flow import FlowTask, sample_crps
from astrops.models.tasks import GaussianTask
from astrops.models.transforms import TargetCodec

EDGES = torch.stack([torch.linspace(0, 1, 26)] * 2)


def _simulate(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """θ ~ U[0, 1]²; x1 = |θ1 − 0.5| + 0.05 ε (θ1's posterior is two mirror modes about 0.5), x2 =
    θ2 + 0.1 ε (θ2's posterior is a Gaussian cut by the prior's edges): neither is a Gaussian."""
    th = torch.rand(n, 2, generator=g)
    x = torch.stack(
        [
            (th[:, 0] - 0.5).abs() + 0.05 * torch.randn(n, generator=g),
            th[:, 1] + 0.1 * torch.randn(n, generator=g),
        ],
        1,
    )
    return x, th


def _fit(task_cls, x, th, **kw):
    torch.manual_seed(0)
    codec = TargetCodec.fit(th.numpy(), EDGES.numpy(), True)
    emb = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 32), nn.SiLU())
    task = task_cls(codec, 32, calibrate=False, **kw)
    params = [*emb.parameters(), *task.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 2000)
    for _ in range(2000):
        i = torch.randint(0, len(x), (512,))
        loss = task.loss(task(emb(x[i])), th[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return emb, task


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(1)
    x, th = _simulate(6000, g)
    x_test, th_test = _simulate(1000, g)
    flow = _fit(
        FlowTask, x, th, hidden_features=[32, 32], transforms=2, n_samples=1000, latent="probit"
    )
    gauss = _fit(GaussianTask, x, th)
    return x_test, th_test, flow, gauss


def _coverage(lo, hi, th):
    return ((th >= lo) & (th <= hi)).float().mean(0).numpy()


def test_flow_covers_nominally_where_a_gaussian_head_does_not(toy):
    x, th, (emb, flow), (gemb, gauss) = toy
    with torch.no_grad():
        dec = flow.decode(flow(emb(x)))
        g = gauss.decode(gauss(gemb(x)))
    c68, c95 = _coverage(dec["lo68"], dec["hi68"], th), _coverage(dec["lo95"], dec["hi95"], th)
    assert np.all(np.abs(c68 - 0.68) < 0.04) and np.all(np.abs(c95 - 0.95) < 0.035), (c68, c95)
    g68 = _coverage(g["value"] - g["std"], g["value"] + g["std"], th)
    assert abs(g68[0] - 0.68) > 0.08, g68  # one Gaussian across two modes: its intervals miss
    assert ((dec["samples"] >= 0) & (dec["samples"] <= 1)).all()  # support = the prior box


def test_flow_finds_both_modes_of_the_closed_form_posterior(toy):
    _, _, (emb, flow), _ = toy
    x = torch.tensor([[0.3, 0.5]])
    with torch.no_grad():
        s = flow.sample(flow(emb(x)), 4000)[0, :, 0]
    # p(θ1 | x1 = 0.3) ∝ N(0.3; |θ1 − 0.5|, 0.05) on [0, 1]: modes at 0.2 and 0.8 with equal mass
    low, high = ((s > 0.05) & (s < 0.35)).float().mean(), ((s > 0.65) & (s < 0.95)).float().mean()
    assert (
        low > 0.4
        and high > 0.4
        and abs(low - high) < 0.1
        and ((s > 0.4) & (s < 0.6)).float().mean() < 0.05
    )


def test_log_prob_is_a_density_on_the_box(toy):
    _, _, (emb, flow), _ = toy
    ctx = emb(torch.tensor([[0.2, 0.3]])).detach()
    grid = torch.linspace(0.0025, 0.9975, 200)
    t1, t2 = torch.meshgrid(grid, grid, indexing="ij")
    theta = torch.stack([t1.reshape(-1), t2.reshape(-1)], 1)
    with torch.no_grad():
        p = flow.log_prob(ctx.expand(len(theta), -1), theta).exp()
    assert abs(float(p.mean()) - 1.0) < 0.03  # ∫ q(θ | x) dθ over the unit box ≈ mean × area 1


def test_sample_crps_matches_the_gaussian_closed_form():
    from astrops.scores import gaussian_scores

    g = torch.Generator().manual_seed(0)
    y = torch.randn(500, 3, generator=g)
    samples = 0.3 + 1.5 * torch.randn(500, 4000, 3, generator=g)
    exact = gaussian_scores(torch.full_like(y, 0.3), torch.full_like(y, 1.5), y)["crps"]
    assert float((sample_crps(samples, y) - exact).abs().mean()) < 0.02
