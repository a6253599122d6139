"""The out-of-distribution flag of every shipped experiment on one unseen store, as a table.

    .venv/bin/python scripts/ood_targets.py --test-store data/ood_test [--models models.txt]
                                            [--out ood_targets] [--experiments a b ...]

The OOD score is fitted by the data module from the training split alone (seeded by
``data.split_seed``): it does not depend on the network's weights, its training length or the
number of ensemble members. So each experiment is trained here for one epoch, one member, into a
temporary MLflow store, and its checkpoint carries exactly the score the full experiment's
checkpoints carry (``tests/test_uncertainty.py`` checks that members share it). ``--models`` gives
already trained ones instead, one ``experiment path`` per line. Writes ``<out>.json`` (every
rate with its binomial SE) and ``<out>.md`` (the table in docs/observations.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = [
    "best_regression",
    "best_classification",
    "best_uncertainty",
    "best_multiz",
    "best_multiz_uncertainty",
    "posterior_z8",
    "hera350_z8",
    "hera350_multiz",
    "hera350_multiz_uncertainty",
    "hera350_multiz_posterior",
    "ska_low_multiz",
]


def train_briefly(experiment: str, tmp: Path) -> str:
    """One epoch, one member: the checkpoint path ``train.py`` prints last."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "ASTROPS_LOG_DIR": str(tmp / "logs"),
        "OMP_NUM_THREADS": "1",
    }
    overrides = ["trainer.max_epochs=1", "ensemble.members=1", "saliency=false"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"experiment={experiment}", *overrides],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip().splitlines()[-1]


def row(experiment: str, r: dict) -> str:
    cells = [experiment, r["space"], str(r["n_calibration"])]
    for kind in ("in_distribution", "times10", "reversed_k", "reversed_z"):
        if kind not in r:
            cells.append("–")
            continue
        a, i = r[kind]["all"], r[kind]["informative"]
        cells.append(f"{a['rate']:.3f} ± {a['se']:.3f} ({i['rate']:.3f} ± {i['se']:.3f})")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-store", required=True)
    ap.add_argument("--models", default=None, help="lines 'experiment path' (default: train)")
    ap.add_argument("--experiments", nargs="*", default=EXPERIMENTS)
    ap.add_argument("--out", default="ood_targets")
    args = ap.parse_args()
    from astrops.analysis.ood_check import check

    if args.models:
        models = dict(line.split() for line in Path(args.models).read_text().splitlines() if line)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="ood-targets-"))
        models = {e: train_briefly(e, tmp) for e in args.experiments}
    results = {e: check(models[e], args.test_store) for e in args.experiments}
    n = next(iter(results.values()))["in_distribution"]["all"]["n"]
    lines = [
        f"Flagged share ± binomial SE on {args.test_store} ({n} spectra; in brackets the "
        "informative ones, 0.05 < x̄_HI < 0.95 at one or more redshifts)",
        "",
        "| experiment | space | calibration scores | in distribution (false alarms) | Δ² × 10 "
        "| k reversed | z reversed |",
        "|---|---|---|---|---|---|---|",
        *(row(e, r) for e, r in results.items()),
    ]
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=1) + "\n")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
