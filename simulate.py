"""Simulate 21-cm power spectra into the store: ``python simulate.py simulation.n=100
simulation.workers=2``."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="simulate")
def main(cfg: DictConfig) -> None:
    from astrops.entry import run_simulate

    run_simulate(cfg)  # bad input exits 2 with one line (astrops.entry.policy)


if __name__ == "__main__":
    main()
