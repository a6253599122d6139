"""Train a model: ``python train.py model=cnn task=classification``. The last line printed is the
best checkpoint."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from astrops.entry import run_train

    return run_train(cfg)


if __name__ == "__main__":
    main()
