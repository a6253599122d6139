"""What a finished test hands to the run's report, and the hook through which it is handed.

Training writes its run and its artefacts (checkpoints, the MLflow Model, the results); the report
people read (metrics table, figures, calibration suite, model card, saliency) is analysis, which
sits above training. The entry point passes that report in as a :data:`Reporter`, so training
never imports analysis and a run without one (a test, a library user) skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from astrops.data import SpectraDataModule
    from astrops.tracking import TrackedRun


@dataclass
class TestReport:
    """Everything one run's test produced.

    Args:
        dm: the data module the run was tested on (parameters, split, observation).
        columns: the metrics table's (header, metric key) pairs (the task's ``table_columns``).
        results: every metric so far (``test/...``, ``best/val/...``).
        outputs: the test set's ``true``, ``pred`` and where the prediction has them ``std``,
            ``samples`` (N, S, P) and the truths' ``pit``, in physical units.
        out_dir: the run's output directory (files are written here when there is no run).
        run: the MLflow run to log to, or None.
        model: the trained network, for its model card and saliency (None for ensembles and
            baselines).
        confusion: confusion matrices of a classifier, one per parameter.
        history: per-epoch metrics for the training curves.
        saliency: whether to compute the network's saliency.
        stages: further result stages to print as tables (e.g. ``test_informative``).
    """

    dm: SpectraDataModule
    columns: Sequence[tuple[str, str]]
    results: dict[str, float]
    outputs: dict[str, np.ndarray]
    out_dir: Path
    run: TrackedRun | None = None
    model: Any = None
    confusion: list | None = None
    history: list | None = None
    saliency: bool = False
    stages: tuple[str, ...] = ()


# returns metrics the report computed (the calibration suite's) for the run's results
Reporter = Callable[[TestReport], dict[str, float]]


def report(reporter: Reporter | None, test: TestReport) -> dict[str, float]:
    """The reporter's metrics, or none when no reporter was given."""
    return reporter(test) if reporter is not None else {}
