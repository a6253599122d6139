"""Posterior samples of a zuko masked autoregressive flow, each dimension's conditioner evaluated
once, and only where a sample changes it.

zuko inverts a fully autoregressive transform of P dimensions by P passes, and each pass runs the
whole hyper-network on [x, context] and inverts every dimension's spline, although one more
dimension becomes exact per pass. Sampling a posterior is that inverse for every sample. Here the
same inverse is computed without the waste, with zuko's own weights, masks and splines:

- a hidden unit whose mask sees the context alone has one value per spectrum: computed once, not
  once per sample and pass (a third of the units, and the context's 32 of the 35 inputs);
- at the pass that makes dimension d exact, only d's outputs of the last layer and the units they
  need are computed, and only d's spline inverted (zuko's ``MonotonicRQSTransform``).

The samples equal zuko's ``flow(c).rsample`` for the same base noise (to float rounding:
``tests/test_flow_sampling.py``); the speed-up is in ``benchmarks/posterior_sampling.py``.

References:
    Papamakarios, Pavlakou & Murray 2017, "Masked autoregressive flow for density estimation",
    arXiv:1705.07057 (the inverse is sequential in the dimensions). zuko:
    https://github.com/probabilists/zuko (``MaskedAutoregressiveTransform``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import zuko
from torch import nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.utils import unpack


def _layers(t: MaskedAutoregressiveTransform) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The hyper-network's masked weights and biases, layer by layer."""
    return [(m.mask * m.weight, m.bias) for m in t.hyper if isinstance(m, nn.Linear)]


def _activation(t: MaskedAutoregressiveTransform) -> nn.Module:
    acts = [m for m in t.hyper if not isinstance(m, nn.Linear)]
    return acts[0] if acts else nn.Identity()


def invert(t: MaskedAutoregressiveTransform, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x with t(c)(x) = y, for y (n, B, P) and context c (B, C): dimension by dimension in the
    transform's order, each hidden unit computed per spectrum when it sees only the context, per
    sample only when it sees x and the dimension being inverted needs it."""
    layers, act, p = _layers(t), _activation(t), y.shape[-1]
    # which x-dimensions each unit of each layer depends on, through the masks
    deps = [layers[0][0][:, :p] != 0]
    for w, _ in layers[1:-1]:
        deps.append(((w != 0).float() @ deps[-1].float()) > 0)
    ctx = [~d.any(1) for d in deps]  # units that see the context alone
    # their values, once per spectrum (B, units)
    h_c = [act(F.linear(c, layers[0][0][ctx[0], p:], layers[0][1][ctx[0]]))]
    first_c = F.linear(c, layers[0][0][:, p:], layers[0][1])  # (B, H1): all units' context share
    for (w, b), cur, prev in zip(layers[1:-1], ctx[1:], ctx[:-1], strict=True):
        h_c.append(act(F.linear(h_c[-1], w[cur][:, prev], b[cur])))
    w_out, b_out = layers[-1]
    x = torch.zeros_like(y)
    for d in torch.argsort(t.order, stable=True).tolist():
        rows = slice(d * t.total, (d + 1) * t.total)
        need = [(w_out[rows] != 0).any(0)]  # units each layer must supply, from the top down
        for w, _ in reversed(layers[1:-1]):
            need.insert(0, (w[need[0]] != 0).any(0))
        sel = [nd & ~cc for nd, cc in zip(need, ctx, strict=True)]  # needed, seeing x
        h = act(F.linear(x, layers[0][0][sel[0], :p]) + first_c[:, sel[0]])
        for i, (w, b) in enumerate(layers[1:-1], start=1):
            cur, prev = sel[i], sel[i - 1]
            per_spectrum = F.linear(h_c[i - 1], w[cur][:, ctx[i - 1]], b[cur])
            h = act(F.linear(h, w[cur][:, prev]) + per_spectrum)
        out = F.linear(h, w_out[rows][:, sel[-1]]) + F.linear(
            h_c[-1], w_out[rows][:, ctx[-1]], b_out[rows]
        )
        x = x.clone()
        x[..., d] = t.univariate(*unpack(out, t.shapes)).inv(y[..., d])
    return x


def supported(flow: zuko.flows.Flow) -> bool:
    """Whether :func:`sample` applies: every transform fully autoregressive (one dimension per
    pass)."""
    ts = getattr(flow.transform, "transforms", [])
    return bool(ts) and all(
        isinstance(t, MaskedAutoregressiveTransform)
        and t.order is not None
        and len(set(t.order.tolist())) == len(t.order)
        for t in ts
    )


def sample(flow: zuko.flows.Flow, c: torch.Tensor, n: int) -> torch.Tensor:
    """(n, B, P) samples of ``flow`` given contexts c (B, C): zuko's base noise, drawn as
    ``flow(c).rsample((n,))`` draws it, through the inverse transforms in reverse order."""
    dist = flow(c)
    if not supported(flow):
        return dist.rsample((n,))
    z = dist.base.rsample((n,))
    for t in reversed(flow.transform.transforms):
        z = invert(t, c, z)
    return z
