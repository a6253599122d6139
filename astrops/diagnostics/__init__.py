"""Calibration diagnostics of probabilistic models (Gaussian heads, their ensembles, flows),
sbi-style: numbers in :mod:`.calibration`, figures in :mod:`.plots`, the suite every run and the
``python -m astrops diagnostics`` command report in :mod:`.suite`."""

from astrops.diagnostics.suite import CalibrationReport, calibration_suite

__all__ = ["CalibrationReport", "calibration_suite"]
