"""``python -m astrops COMMAND ...``: the package's command lines, one name each.

    python -m astrops store info|verify|export|import|compact|provenance PATH
    python -m astrops score MODEL --test-store DIR          (a model on unseen simulations)
    python -m astrops diagnostics MODEL --test-store DIR    (its calibration suite)
    python -m astrops ood-check MODEL --test-store DIR      (its out-of-distribution flag)
    python -m astrops compare [EXPERIMENT]                  (runs of an MLflow experiment)
    python -m astrops learning-curve --experiment NAME
    python -m astrops plots spectra [DATASET]
    python -m astrops reference --emulator ... --flow ... --gaussian ... --test-store DIR
    python -m astrops emulator-check EMULATOR --store DIR
    python -m astrops reference-selfcheck --emulator EMU --observation NAME --out FILE.json
    python -m astrops reference-posterior ...   (also: python -m astrops.reference.posterior)
    python -m astrops reference-limits --emulator EMU --observation hera_h1c_idr3 --out DIR
    python -m astrops noise-tables OBSERVATION|all

``python -m astrops COMMAND --help`` tells each one's arguments. Every command exits 0 when done
and 2 on bad input, with one line on stderr naming the problem and the fix, before any work. The
training, simulation and prediction entry points are the Hydra scripts ``train.py``,
``simulate.py``, ``baselines.py`` and ``predict.py``.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module in astrops.entry, function): imported on use, so one command loads only its own
COMMANDS = {
    "store": ("store", "cli"),
    "score": ("analysis", "score_main"),
    "diagnostics": ("diagnostics", "diagnostics_main"),
    "ood-check": ("analysis", "ood_check_main"),
    "compare": ("analysis", "compare_main"),
    "learning-curve": ("analysis", "learning_curve_main"),
    "plots": ("analysis", "plots_main"),
    "reference": ("reference", "reference_main"),
    "emulator-check": ("reference", "emulator_check_main"),
    "reference-selfcheck": ("reference_posterior", "selfcheck_main"),
    "reference-posterior": ("reference_posterior", "posterior_main"),
    "reference-limits": ("reference_limits", "limits_main"),
    "noise-tables": ("noise_tables", "noise_tables_main"),
}


def main(argv: list[str] | None = None) -> int:
    """Run ``argv[0]``'s command on the rest of ``argv`` (default ``sys.argv[1:]``); returns its
    exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}: give one of {', '.join(COMMANDS)} "
            "(python -m astrops --help)",
            file=sys.stderr,
        )
        return 2
    module, function = COMMANDS[name]
    command = getattr(importlib.import_module(f"astrops.entry.{module}"), function)
    return command(rest)
