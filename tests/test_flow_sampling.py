"""The fast flow sampler equals zuko's own inverse for the same base noise."""

from __future__ import annotations

import torch
import zuko

from astrops.models import flow_sampling
from astrops.models.flow import FlowTask
from astrops.models.transforms import TargetCodec


def _flow(seed: int, jitter: float) -> zuko.flows.Flow:
    torch.manual_seed(seed)
    flow = zuko.flows.NSF(3, context=8, bins=8, transforms=3, hidden_features=[32, 32])
    with torch.no_grad():  # away from the near-identity initialisation: curved splines
        for p in flow.parameters():
            p.add_(jitter * torch.randn_like(p))
    return flow


def test_samples_equal_zukos_inverse_for_the_same_noise():
    flow = _flow(0, 0.3).double()
    c = torch.randn(40, 8, dtype=torch.float64)
    torch.manual_seed(5)
    want = flow(c).rsample((500,))
    torch.manual_seed(5)
    got = flow_sampling.sample(flow, c, 500)
    assert got.shape == want.shape == (500, 40, 3)
    assert torch.allclose(got, want, atol=1e-8, rtol=0)
    # float32 on an untrained flow: to 1e-5, as the model samples
    flow, c = _flow(1, 0.0), torch.randn(40, 8)
    torch.manual_seed(6)
    want = flow(c).rsample((500,))
    torch.manual_seed(6)
    assert (flow_sampling.sample(flow, c, 500) - want).abs().max() < 1e-5


def test_the_flow_head_samples_through_it_and_gradients_flow():
    codec = TargetCodec.fit(
        torch.rand(50, 3).numpy() * [195, 2, 15] + [5, 4, 5],
        torch.tensor([[5.0, 200.0], [4.0, 6.0], [5.0, 20.0]]).numpy(),
        True,
    )
    head = FlowTask(codec, in_features=16, hidden_features=[32, 32], context_features=8)
    assert flow_sampling.supported(head.flow)
    h = torch.randn(4, 16, requires_grad=True)
    out = head(h)
    torch.manual_seed(2)
    samples = head.sample(out, 100)
    torch.manual_seed(2)
    z = head.flow(out).rsample((100,))
    assert torch.allclose(samples, head.from_latent(z).transpose(0, 1), atol=1e-4)
    head.point_estimate(out).sum().backward()  # saliency differentiates through the samples
    assert h.grad is not None and torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
