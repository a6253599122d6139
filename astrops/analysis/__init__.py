"""After-the-fact analysis: what people read once runs exist, apart from the pipeline that makes
them.

* :mod:`.report` and :mod:`.run_report`: a training run's metrics table, figures, calibration
  suite, model card and saliency (handed to training as its reporter by the entry point).
* :mod:`.saliency`: which k-bins and redshifts each parameter relies on.
* :mod:`.compare`, :mod:`.learning_curve`: tables and figures across the runs of an MLflow
  experiment (``python -m astrops compare``, ``python -m astrops learning-curve``).
* :mod:`.plots`: figures of a stored dataset (``python -m astrops plots``).

Importing this package imports nothing else (no matplotlib, torch or MLflow), so code that only
needs one submodule, or the package's name, pays for nothing more; the drawing modules get pyplot
from :mod:`astrops.plotting`, the one place that picks matplotlib's backend. The command lines
live in :mod:`astrops.entry.analysis`.
"""
