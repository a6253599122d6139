"""Classical baselines on the neural runs' data and split: ``python baselines.py -m
baseline=ridge,knn``."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="baselines")
def main(cfg: DictConfig) -> float | None:
    from astrops.entry import run_baselines

    return run_baselines(cfg)


if __name__ == "__main__":
    main()
