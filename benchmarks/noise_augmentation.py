"""Cost of the observation layer's noise augmentation: a training epoch with and without the fresh
noise.

    .venv/bin/python benchmarks/noise_augmentation.py [--reps 7] [--epochs 3]

Same data module (bundled reference data, z = 8, ``observation=hera350_1000h``: 13 bins), same
default dense network and optimiser, same batches; the only difference is whether each training
batch gets Δ² + σ·N(0, 1) drawn on the device (``DeviceBatches.noise``). Sides alternate within
each repetition, one torch thread; medians of the epoch time and their ratio are reported (target ≤
1.10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("ASTROPS_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from astrops.data import SpectraDataModule  # noqa: E402
from astrops.models.backbones import DenseBackbone  # noqa: E402
from astrops.models.tasks import RegressionTask  # noqa: E402


def epoch_seconds(dm: SpectraDataModule, noise: bool, epochs: int) -> float:
    torch.manual_seed(0)
    backbone = DenseBackbone(dm.input_shape, hidden=[256, 256, 256], activation="silu")
    task = RegressionTask(dm.codec, backbone.out_features)
    params = [*backbone.parameters(), *task.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    loader = dm.train_dataloader()
    if not noise:
        loader.noise = None
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = task.loss(task(backbone(dm.transform(x))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - t0) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = os.environ["ASTROPS_ROOT"]
    dm = SpectraDataModule(
        f"{root}/data/reference",
        "reference",
        observation={
            "name": "hera350_1000h",
            "tables_dir": f"{root}/data/noise/hera350_1000h",
            "min_k": 0.1,
            "max_k": 1.0,
        },
    )
    dm.prepare()
    dm.setup()
    times: dict[str, list[float]] = {"without noise": [], "with noise": []}
    for _ in range(args.reps):
        for side, noise in (("without noise", False), ("with noise", True)):
            times[side].append(epoch_seconds(dm, noise, args.epochs))
    base = statistics.median(times["without noise"])
    for side, values in times.items():
        med = statistics.median(values)
        print(
            f"{side:14s} epoch {1e3 * med:7.1f} ms (min {1e3 * min(values):.1f}, max "
            f"{1e3 * max(values):.1f}), "
            f"ratio {med / base:.3f}"
        )


if __name__ == "__main__":
    main()
