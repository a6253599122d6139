"""Start-up of the entry points against ``python -c "import torch"``, side by side.

    .venv/bin/python benchmarks/startup.py [--reps 7] [--ckpt PATH] [--baseline DIR]

Each repetition runs, one after the other in a rotating order, fresh processes of

* ``python -c "import torch"`` (the yardstick: what any process that applies a torch model pays),
* ``python predict.py ckpt_path=<ckpt> input=<one spectrum> output=…`` (a whole prediction),
* ``python train.py --help``,
* ``python train.py trainer.max_epochs=abc`` (a value typo: one line, exit 2),
* ``python train.py trainr.max_epochs=5`` (a key typo: Hydra's own error, exit 1),

all with one torch/OpenMP thread, from a neutral working directory, Hydra's output under a
temporary directory. A warm-up round (not counted) fills the page cache first. Prints each
command's median wall time (range) and the ratio of medians to ``import torch``, plus the median of
per-repetition ratios. Without ``--ckpt`` a quick model is trained first (``train.py
trainer.max_epochs=1 logger=none``). ``--baseline DIR`` adds DIR's ``predict.py`` (run with
``PYTHONPATH=DIR``, e.g. a copy of the tree at an earlier commit) to the same rotation, so before
and after are measured side by side.

Then, once, in a fresh process: what Hydra's plugin discovery costs and whether it imports the
Optuna sweeper, joblib or submitit (it scans every ``hydra_plugins`` module at every start), and
which of Lightning, MLflow, torchmetrics, Optuna and pandas a ``predict.py`` process imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ASTROPS_ROOT": ROOT,
    "HYDRA_FULL_ERROR": "0",
}

PROBE_PLUGINS = """
import json, sys, time
t0 = time.perf_counter()
from hydra.core.plugins import Plugins
t1 = time.perf_counter()
p = Plugins.instance()
t2 = time.perf_counter()
heavy = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('optuna', 'joblib', 'submitit', 'sqlalchemy')})
print(json.dumps({"import_hydra_core_s": t1 - t0, "scan_s": t2 - t1,
                  "plugin_module_import_s": p.stats.total_modules_import_time,
                  "plugin_modules": sorted(m for m in p.stats.modules_import_time if m.startswith('hydra_plugins')),
                  "heavy_modules_loaded": heavy}))
"""

# predict.py's own main, run under a wrapper that reports which packages the process imported
PROBE_PREDICT = """
import atexit, json, runpy, sys
def report():
    roots = {m.split('.')[0] for m in sys.modules}
    print("MODULES " + json.dumps(sorted(roots & {'lightning', 'pytorch_lightning', 'mlflow', 'torchmetrics', 'optuna',
                                                   'pandas', 'matplotlib', 'scipy', 'sklearn'})))
atexit.register(report)
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def quick_checkpoint(tmp: str) -> str:
    proc = subprocess.run(
        [
            PY,
            os.path.join(ROOT, "train.py"),
            "trainer.max_epochs=1",
            "logger=none",
            "saliency=false",
            "callbacks.progress_bar=null",
            f"hydra.run.dir={tmp}/train",
        ],
        cwd=tmp,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip().splitlines()[-1]


def run(cmd: list[str], cwd: str, expect: int, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != expect:
        raise SystemExit(
            f"{' '.join(cmd)} exited {proc.returncode}, expected {expect}:\n{proc.stderr[-2000:]}"
        )
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument(
        "--ckpt", default=None, help="a checkpoint train.py wrote (default: train a quick one)"
    )
    ap.add_argument("--baseline", default=None, help="a source tree whose predict.py is timed too")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="astrops-startup-")
    ckpt = args.ckpt or quick_checkpoint(tmp)
    ex = np.load(os.path.join(ROOT, "data", "examples", "spectra_z8.npz"))
    np.savez(f"{tmp}/one.npz", k=ex["k"], delta=ex["delta"][0])  # one spectrum, (n_k,)
    predict = [
        os.path.join(ROOT, "predict.py"),
        f"ckpt_path={ckpt}",
        f"input={tmp}/one.npz",
        f"output={tmp}/out.csv",
        f"hydra.run.dir={tmp}/predict",
    ]
    train = os.path.join(ROOT, "train.py")
    cases = {  # name: (command, expected exit status[, environment])
        "import torch": ([PY, "-c", "import torch"], 0),
        "predict.py, one spectrum": ([PY, *predict], 0),
        "train.py --help": ([PY, train, "--help"], 0),
        "train.py trainer.max_epochs=abc": (
            [PY, train, "trainer.max_epochs=abc", f"hydra.run.dir={tmp}/typo"],
            2,
        ),
        "train.py trainr.max_epochs=5": (
            [PY, train, "trainr.max_epochs=5", f"hydra.run.dir={tmp}/typo"],
            1,
        ),
    }
    if args.baseline:
        base_dir = os.path.abspath(args.baseline)
        cases["predict.py, one spectrum (baseline)"] = (
            [PY, os.path.join(base_dir, "predict.py"), *predict[1:]],
            0,
            {**ENV, "PYTHONPATH": base_dir, "ASTROPS_ROOT": base_dir},
        )
    names = list(cases)
    for name in names:  # warm-up: page cache, .pyc files
        cmd, expect, *env = cases[name]
        run(cmd, tmp, expect, *env)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.reps):
        # rotate, so no side always runs first
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            cmd, expect, *env = cases[name]
            times[name].append(run(cmd, tmp, expect, *env))
    base = statistics.median(times["import torch"])
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, "
        f"{args.reps} repetitions, OMP_NUM_THREADS=1"
    )
    print(
        "| command | median s | range s | ratio of medians to import torch | median of per-rep "
        "ratios |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        t = times[name]
        per_rep = statistics.median(a / b for a, b in zip(t, times["import torch"], strict=True))
        print(
            f"| `{name}` | {statistics.median(t):.2f} | {min(t):.2f}–{max(t):.2f} | "
            f"**{statistics.median(t) / base:.2f}** | {per_rep:.2f} |"
        )

    plugins = subprocess.run(
        [PY, "-c", PROBE_PLUGINS], cwd=tmp, env=ENV, capture_output=True, text=True, check=True
    )
    info = json.loads(plugins.stdout.strip().splitlines()[-1])
    print(
        "\nHydra plugin discovery (one fresh process): import hydra.core.plugins "
        f"{info['import_hydra_core_s']:.3f} s, "
        f"scan {info['scan_s']:.3f} s, of which importing plugin modules "
        f"{info['plugin_module_import_s']:.3f} s; "
        f"modules scanned: {', '.join(info['plugin_modules'])}; heavy packages loaded by the "
        "scan: "
        f"{info['heavy_modules_loaded'] or 'none'}"
    )
    probe = subprocess.run(
        [PY, "-c", PROBE_PREDICT, *predict],
        cwd=tmp,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = [line for line in probe.stdout.splitlines() if line.startswith("MODULES ")][-1][
        len("MODULES ") :
    ]
    print(
        "packages a predict.py process imported (of lightning, mlflow, torchmetrics, optuna, "
        "pandas, matplotlib, "
        f"scipy, sklearn): {', '.join(json.loads(loaded)) or 'none'}"
    )


if __name__ == "__main__":
    main()
