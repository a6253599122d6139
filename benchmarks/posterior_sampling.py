"""Posterior sampling: 1 000 samples for each of 1 000 spectra from a flow model (target ≤ 8 s on
2 cores).

    .venv/bin/python benchmarks/posterior_sampling.py [--spectra 1000] [--samples 1000] [--reps 3]
    [--threads 2]

Trains a quick flow model (``task=flow``, reference data, z = 8, 2 epochs: sampling cost does not
depend on how well it is trained), then times ``load_model(path).sample(k, delta, n)`` — what a
user calls, input checks, transform, backbone, flow sampling and the recalibration of the samples
included — and, side by side in the same run, the table ``predict`` writes (``Predictor.columns``:
1 000 samples per spectrum behind the quantiles) and the same ``sample`` call for a Gaussian model
(the closed-form reference), and the flow's ``sample`` again with zuko's own inverse
(``flow(c).rsample``) in place of :mod:`astrops.models.flow_sampling`. ``--threads`` torch threads
(2 = these two cores; run nothing else meanwhile). Median over ``--reps``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("ASTROPS_ROOT", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from astrops.inference import load_model  # noqa: E402
from astrops.models import flow_sampling  # noqa: E402
from astrops.store import Store  # noqa: E402
from astrops.training import train  # noqa: E402


def _model(tmp: str, task: str) -> str:
    from conftest import compose_cfg

    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/{task}",
            "logger=none",
            "callbacks.progress_bar=null",
            "saliency=false",
            f"task={task}",
            "trainer.max_epochs=2",
            "model.train_metrics=false",
        ],
    )
    return train(cfg)[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spectra", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    flow, gauss = load_model(_model(tmp, "flow")), load_model(_model(tmp, "gaussian"))
    torch.set_num_threads(args.threads)
    ds = Store(os.path.join(ROOT, "data", "reference")).dataset("reference")
    r = ds.load()
    delta = np.tile(r.delta[:, 1, :], (-(-args.spectra // len(r)), 1))[: args.spectra]
    timings: dict[str, list[float]] = {
        "flow sample": [],
        "flow sample, zuko's inverse": [],
        "flow table (predict)": [],
        "gaussian sample": [],
    }

    def zuko_sample() -> None:
        """The same call with zuko's own ``rsample`` (P full passes per transform)."""
        fast = flow_sampling.sample
        flow_sampling.sample = lambda f, c, n: f(c).rsample((n,))
        try:
            flow.sample(ds.k, delta, args.samples)
        finally:
            flow_sampling.sample = fast

    for _ in range(args.reps):
        for name, call in (
            ("flow sample", lambda: flow.sample(ds.k, delta, args.samples)),
            ("flow sample, zuko's inverse", zuko_sample),
            ("flow table (predict)", lambda: flow.columns(ds.k, delta)),
            ("gaussian sample", lambda: gauss.sample(ds.k, delta, args.samples)),
        ):
            t0 = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - t0)
    print(
        f"{args.spectra} spectra x {args.samples} samples, {args.threads} torch threads, median "
        f"of {args.reps}:"
    )
    for name, t in timings.items():
        print(
            f"  {name:22s} {statistics.median(t):7.2f} s   (all: "
            f"{', '.join(f'{x:.2f}' for x in t)})"
        )
    ratio = statistics.median(timings["flow sample"]) / statistics.median(
        timings["gaussian sample"]
    )
    speedup = statistics.median(timings["flow sample, zuko's inverse"]) / statistics.median(
        timings["flow sample"]
    )
    print(f"  flow / gaussian sampling: {ratio:.1f}x; target: flow sample <= 8 s")
    print(f"  zuko's inverse / astrops's: {speedup:.2f}x")


if __name__ == "__main__":
    main()
