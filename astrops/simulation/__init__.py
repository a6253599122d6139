"""21cmFAST coeval simulations and 21CMMC power spectra (knows nothing of training)."""

from astrops.errors import SimulationConfigError
from astrops.simulation.coeval import VARIED, CoevalSimulator
from astrops.simulation.design import Design
from astrops.simulation.runner import RunSummary, simulate_into_store

__all__ = [
    "VARIED",
    "CoevalSimulator",
    "Design",
    "RunSummary",
    "SimulationConfigError",
    "simulate_into_store",
]
