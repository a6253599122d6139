"""What the console shows: progress, astrops' own one-line notes, warnings, the metrics table,
where the run is, and the model path as the very last line on stdout. Each line once; nothing a
user cannot act on.

Libraries talk more than that: Lightning adds its own stderr handler (every line printed twice
beside Hydra's), advertises a hosted logger, reports GPU/TPU availability; MLflow announces
database migrations and signature checks. Their INFO lines still reach the run's log file (Hydra's
file handler); the console handler (``conf/hydra/default.yaml``) keeps, through
:class:`ConsoleFilter`, everyone's warnings and the simulation's progress lines
(``progress=false``, e.g. on a cluster); astrops' other notes (the dataset summary, timings) are in
the log file. What a command produces is printed on stdout.
"""

from __future__ import annotations

import logging
import os
import warnings

ADVERTS = ("litlogger",)  # messages that sell something rather than say something


PROGRESS = ("astrops.simulation",)  # loggers whose INFO lines are progress a user watches


class ConsoleFilter(logging.Filter):
    """Every warning, and progress lines; no adverts."""

    def filter(self, record: logging.LogRecord) -> bool:
        if any(a in record.getMessage() for a in ADVERTS):
            return False
        return record.levelno >= logging.WARNING or record.name.startswith(PROGRESS)


def quiet_libraries() -> None:
    """Before the libraries load: MLflow's own handler at WARNING, and no deprecation notices that
    only Lightning's maintainers can act on."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def one_copy_of_lightning_lines() -> None:
    """After ``import lightning``: drop the stderr handler it adds to its ``lightning`` logger, so
    its lines go through the logging configuration once (console filtered, file complete) instead
    of twice."""
    logger = logging.getLogger("lightning")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)
