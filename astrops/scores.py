"""Per-spectrum scores of predictive distributions, from their moments or their samples.

The one home of the formulas that metrics, task heads, diagnostics and the reference share: the
central-interval levels, the Gaussian closed forms (coverage, NLL, CRPS, PIT) and the sample-based
ones (empirical PIT, sample CRPS, quantile summaries). It sees tensors only and imports nothing
from astrops, so every layer can use it without pulling a model in.

References:
    Gneiting & Raftery (2007), Strictly proper scoring rules, prediction, and estimation, JASA 102.
"""

from __future__ import annotations

import numpy as np
import torch

# the quantiles predict.py writes for every probabilistic head: the median and the central 68 % /
# 95 % intervals
QUANTILE_LEVELS = {
    "median": 0.5,
    "lo68": 0.15865525393145707,
    "hi68": 0.8413447460685429,
    "lo95": 0.025,
    "hi95": 0.975,
}
# Φ⁻¹(0.84) and Φ⁻¹(0.975): half-widths of the central 68 % and 95 % intervals in σ
Z68, Z95 = 0.994457883209753, 1.959963984540054


def gaussian_scores(
    mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample scores (B, P) of Gaussian predictions: inside the 68/95 % intervals (``in68``,
    ``in95``), ``nll``, ``crps`` (closed form, Gneiting & Raftery 2007) and ``pit``."""
    std = std.clamp_min(1e-12)
    z = (target - mean) / std
    normal = torch.distributions.Normal(0.0, 1.0)
    pdf, cdf = normal.log_prob(z).exp(), normal.cdf(z)
    return {
        "in68": (z.abs() <= Z68).float(),
        "in95": (z.abs() <= Z95).float(),
        "nll": 0.5 * z**2 + torch.log(std) + 0.5 * torch.log(torch.tensor(2 * torch.pi)),
        "crps": std * (z * (2 * cdf - 1) + 2 * pdf - 1 / torch.pi**0.5),
        "pit": cdf,
    }


def pit(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F(θ_true) per spectrum and parameter (B, P): the fraction of samples (B, S, P) below the
    truth (B, P)."""
    return (samples < y[:, None, :]).float().mean(1)


def sample_crps(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CRPS (B, P) of the samples' empirical distribution: E|X − y| − ½ E|X − X'| (Gneiting &
    Raftery 2007), the second term exact over all pairs from the sorted samples, Σ (2i − S − 1)
    x₍ᵢ₎ · 2/S² — also for a mixture whose samples come in member blocks, where pairing neighbours
    would stay within one member."""
    n = samples.shape[1]
    first = (samples - y[:, None, :]).abs().mean(1)
    weights = (
        2 * torch.arange(1, n + 1, device=samples.device, dtype=samples.dtype) - n - 1
    ).view(1, n, 1)
    second = 2.0 / n**2 * (samples.sort(dim=1).values * weights).sum(1)
    return first - 0.5 * second


def summarize(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """Decoded prediction from samples (B, S, P): mean, std, and the quantiles of
    :data:`QUANTILE_LEVELS`."""
    q = torch.quantile(
        samples,
        torch.tensor(list(QUANTILE_LEVELS.values()), dtype=samples.dtype, device=samples.device),
        dim=1,
    )
    return {
        "value": samples.mean(1),
        "std": samples.std(1),
        "samples": samples,
        **{name: q[i] for i, name in enumerate(QUANTILE_LEVELS)},
    }


def quantile_columns(
    quantiles: dict[str, torch.Tensor], parameters: list[str]
) -> dict[str, np.ndarray]:
    """``<p>_median``, ``<p>_lo68``, ``<p>_hi68``, ``<p>_lo95``, ``<p>_hi95`` (B, P) tensors →
    columns."""
    return {
        f"{p}_{name}": quantiles[name][:, j].detach().cpu().numpy().astype(np.float64)
        for j, p in enumerate(parameters)
        for name in QUANTILE_LEVELS
    }


def decoded_outputs(dec: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, np.ndarray]:
    """A decoded test prediction as arrays for a report: ``true``, ``pred`` and ``std`` where the
    prediction has one, and for posterior samples (flows) the ``samples`` and the truths'
    ``pit``."""
    outputs = {
        name: dec[key].numpy() for name, key in (("pred", "value"), ("std", "std")) if key in dec
    }
    outputs["true"] = y.numpy()
    if "samples" in dec:
        outputs["samples"], outputs["pit"] = dec["samples"].numpy(), pit(dec["samples"], y).numpy()
    return outputs


# -- SBC ranks (Talts et al. 2018, arXiv:1804.06788): the diagnostics' and the reference's --


def sbc_ranks(samples: np.ndarray, truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, P) integer ranks of the truths among their L posterior samples, in {0, …, L}.

    Samples equal to θ* (a flow's samples clamped at a prior edge where θ* also sits) are ties:
    each tie is broken at random (seeded), so the rank is uniform over the tied positions, as
    Talts et al. (2018, §4.1) prescribe for discrete draws; counting them all as above would pile
    ranks at 0 and fail a calibrated posterior."""
    below = (samples < truth[:, None, :]).sum(1)
    ties = (samples == truth[:, None, :]).sum(1)
    u = np.random.default_rng(seed).uniform(size=below.shape)
    return below + np.floor(u * (ties + 1)).astype(below.dtype)


def rank_bins(n: int, n_ranks: int, bins: int = 20) -> tuple[int, np.ndarray]:
    """How many rank bins ``n`` ranks support (≥ 5 expected per bin, at most ``bins``), and each
    bin's share of the ``n_ranks`` possible ranks (exact when ``n_ranks`` is not a multiple of the
    bins)."""
    b = int(max(2, min(bins, n // 5)))
    share = np.bincount((np.arange(n_ranks) * b) // n_ranks, minlength=b) / n_ranks
    return b, share


def sbc_uniformity(ranks: np.ndarray, n_samples: int) -> np.ndarray:
    """χ² p-value (P,) that each parameter's ranks are uniform on {0, …, L} (L = ``n_samples``)."""
    from scipy.stats import chisquare

    b, share = rank_bins(len(ranks), n_samples + 1)
    out = []
    for r in ranks.T:
        counts = np.bincount((r * b) // (n_samples + 1), minlength=b)
        out.append(chisquare(counts, share * len(r)).pvalue)
    return np.asarray(out)
