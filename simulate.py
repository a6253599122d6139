"""Simulate 21-cm power spectra into the store: ``python simulate.py simulation.n=100 simulation.workers=2``."""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="simulate")
def main(cfg: DictConfig) -> None:
    from astrops.entry import run_simulate

    code = run_simulate(cfg)
    if code:  # a plain return on success: launchers (submitit) must see the job finish normally
        sys.exit(code)


if __name__ == "__main__":
    main()
