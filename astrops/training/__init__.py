"""Training: one network (:mod:`.network`), a deep ensemble of them (:mod:`.ensemble`), and the
scikit-learn baselines that stand beside them (:mod:`.baselines`); every run's MLflow lifecycle is
:func:`astrops.tracking.run_lifecycle`."""

from astrops.errors import EnsembleConfigError
from astrops.training.ensemble import train_ensemble
from astrops.training.network import build_model, checkpoint_meta, train

__all__ = ["EnsembleConfigError", "build_model", "checkpoint_meta", "train", "train_ensemble"]
