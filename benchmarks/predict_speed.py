"""predict: spectra per second on 10 000 spectra (start-up excluded), and start-up time.

    .venv/bin/python benchmarks/predict_speed.py [--n 10000] [--reps 5]

Trains a quick dense regression model on the reference data (2 epochs), then times
``load_model`` (start-up inside Python), ``Predictor.predict`` on N spectra, and a whole
``python predict.py`` process (interpreter, imports, Hydra, model, N spectra, CSV).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("ASTROPS_ROOT", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402

from astrops.inference import load_model  # noqa: E402
from astrops.store import Store  # noqa: E402
from astrops.training import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from conftest import compose_cfg

    tmp = tempfile.mkdtemp()
    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp}/run",
            "logger.mlflow=null",
            "callbacks.progress_bar=null",
            "trainer.max_epochs=2",
        ],
    )
    _, best = train(cfg)
    ds = Store(os.path.join(ROOT, "data", "reference")).dataset("reference")
    r = ds.load()
    delta = np.tile(r.delta[:, 1, :], (-(-args.n // len(r)), 1))[: args.n]
    np.savez(f"{tmp}/in.npz", k=ds.k, delta=delta)
    loads, preds, procs = [], [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        p = load_model(best)
        loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        df = p.predict(ds.k, delta)
        preds.append(time.perf_counter() - t0)
        assert len(df) == args.n
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "predict.py"),
                f"ckpt_path={best}",
                f"input={tmp}/in.npz",
                f"output={tmp}/out.csv",
                f"hydra.run.dir={tmp}/h",
            ],
            check=True,
            capture_output=True,
        )
        procs.append(time.perf_counter() - t0)
    print("| what | median | range |")
    print("|---|---|---|")
    print(
        f"| load_model (start-up in Python) | {statistics.median(loads) * 1e3:.0f} ms | "
        f"{min(loads) * 1e3:.0f}-{max(loads) * 1e3:.0f} ms |"
    )
    print(
        f"| predict {args.n} spectra | {args.n / statistics.median(preds):,.0f} spectra/s | "
        f"{statistics.median(preds) * 1e3:.0f} ms |"
    )
    print(
        f"| whole `python predict.py` process on {args.n} spectra | "
        f"{statistics.median(procs):.2f} s | "
        f"{min(procs):.2f}-{max(procs):.2f} s |"
    )


if __name__ == "__main__":
    main()
