"""Every refusal astrops raises, in one module every layer can import.

Each is a bad input the user can fix: its message is one line naming the problem and the fix. The
entry points (:mod:`astrops.entry`) turn them into that line on stderr and exit status 2, before
any work, so the list of what an entry point refuses is one import from here. Each class keeps the
built-in base (``ValueError`` or ``RuntimeError``) its callers have always caught, and all share
:class:`AstropsError`.
"""

from __future__ import annotations


class AstropsError(Exception):
    """A bad input the user can fix: one line, naming the problem and the fix."""


class StoreError(AstropsError, RuntimeError):
    """A problem with a store that the user must fix (one line, names the fix)."""


class ConfigValueError(AstropsError, ValueError):
    """A configuration value that cannot work (one line: key, value, requirement, fix)."""


class SimulationConfigError(AstropsError, ValueError):
    """A simulation configuration that cannot run (one line, names the fix)."""


class ModelSpecError(AstropsError, ValueError):
    """A stored model config that names something outside the table or carries unexpected keys."""


class ObservationError(AstropsError, ValueError):
    """An observation that cannot be applied to the dataset (one line naming the fix)."""


class DataConfigError(AstropsError, ValueError):
    """A data configuration that cannot work with the dataset (one line, names the fix)."""


class InputError(AstropsError, ValueError):
    """A checkpoint or spectra that cannot be used (one line, names the fix)."""


class TrackingError(AstropsError, RuntimeError):
    """The tracking server or store cannot be used (one line, names the fix)."""


class EnsembleConfigError(AstropsError, ValueError):
    """An ensemble configuration that cannot run (one line, names the fix)."""


class BaselineConfigError(AstropsError, ValueError):
    """A baseline estimator that cannot be built or fitted with the configured hyperparameters."""


class CompareError(AstropsError, ValueError):
    """Nothing to compare (no such experiment, no matching runs): one line, exit status 2."""
