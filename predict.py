"""Apply a trained model to 21CMMC-format spectra: ``python predict.py ckpt_path=... input=x.npz
output=y.csv``."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from astrops.entry import run_predict

    run_predict(cfg)  # bad input exits 2 with one line (astrops.entry.policy)


if __name__ == "__main__":
    main()
