"""A model's posterior samples in bulk: how many per spectrum, and in chunks that bound memory.

Kept apart from :mod:`astrops.models.flow` (the head) so the entry points and the evaluation ask
for samples without reaching into the head's internals; works for any model, flows or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from astrops.models.flow import TEST_SAMPLES, FlowTask

__all__ = ["CHUNK_SAMPLES", "TEST_SAMPLES", "posterior_samples", "predict_in_chunks"]

# posterior samples alive at once when predicting (~0.5 GB of a flow's intermediates)
CHUNK_SAMPLES = 500_000


def predict_in_chunks(
    model: nn.Module, x: torch.Tensor, n: int = TEST_SAMPLES
) -> dict[str, torch.Tensor]:
    """``model.predict_physical(x)`` with ``n`` posterior samples per spectrum for its flow heads,
    over chunks of spectra so that at most ``CHUNK_SAMPLES`` samples are alive at once (a model
    without a flow head: one chunk, exactly ``predict_physical``)."""
    flows = any(isinstance(m, FlowTask) for m in model.modules())
    size = max(1, CHUNK_SAMPLES // max(int(n), 1)) if flows else max(len(x), 1)
    with posterior_samples(model, n):
        parts = [model.predict_physical(chunk) for chunk in x.split(size)]
    return (
        parts[0]
        if len(parts) == 1
        else {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    )


@contextmanager
def posterior_samples(model: nn.Module, n: int) -> Iterator[None]:
    """Within the block, every flow head in ``model`` decodes enough samples that the model's
    prediction holds at least ``n`` (each of an ensemble's K members ⌈n / K⌉); restored
    afterwards."""
    heads = [m for m in model.modules() if isinstance(m, FlowTask)]
    members = len(getattr(model, "members", [])) or 1
    before = [h.n_samples for h in heads]
    for h in heads:
        h.n_samples = -(-int(n) // members)
    try:
        yield
    finally:
        for h, b in zip(heads, before, strict=True):
            h.n_samples = b
