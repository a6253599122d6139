"""Training throughput: bare PyTorch loop vs a plain Lightning set-up vs astrops, side by side.

    .venv/bin/python benchmarks/training_throughput.py [--n 20000] [--epochs 2] [--reps 3]

Same data (the reference z = 8 spectra tiled to --n with 1 % jitter), same network, same optimiser,
same number of epochs. Sides alternate within each repetition; medians of samples/second are
reported, with ratios to the bare loop. Validation is off on all sides (the train loop is
compared).

* bare: a Python loop over shuffled index slices of CPU/GPU tensors, Adam, MSE.
* plain Lightning: DataLoader over a TensorDataset (batch_size, shuffle) and a default Trainer.
* astrops: ParameterEstimator + DeviceBatches (grouped: ``STEPS_PER_CALL`` optimizer steps per
  Lightning call, as ``train.py`` runs) + the project's default trainer settings (metrics on).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("ASTROPS_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from astrops.data import DeviceBatches, SpectraDataModule  # noqa: E402
from astrops.data.batches import STEPS_PER_CALL  # noqa: E402
from astrops.models import CNNBackbone, DenseBackbone, ParameterEstimator, RegressionTask  # noqa: E402


def tiled_data(n: int):
    dm = SpectraDataModule(
        os.path.join(os.environ["ASTROPS_ROOT"], "data", "reference"), dataset="reference"
    )
    dm.prepare()
    reps = -(-n // len(dm.params))
    rng = np.random.default_rng(0)
    delta = np.tile(np.nan_to_num(dm.delta), (reps, 1, 1))[:n] * rng.normal(1, 0.01, (n, 1, 1))
    params = np.tile(dm.params, (reps, 1))[:n]
    return (
        dm,
        torch.as_tensor(delta, dtype=torch.float32),
        torch.as_tensor(params, dtype=torch.float32),
    )


DENSE_HIDDEN = [64, 32]  # --dense-hidden: the seed's network by default


def build(dm, kind: str) -> ParameterEstimator:
    backbone = (
        DenseBackbone(dm.input_shape, hidden=DENSE_HIDDEN)
        if kind == "dense"
        else CNNBackbone(dm.input_shape)
    )
    task = RegressionTask(dm.codec, backbone.out_features)
    return ParameterEstimator(
        backbone,
        task,
        dm.transform,
        dm.parameters,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
    )


def bare(dm, kind, x, y, batch, epochs) -> float:
    model = build(dm, kind)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for s in range(0, len(x), batch):
            idx = perm[s : s + batch]
            loss = model.task.loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


class PlainModule(L.LightningModule):
    def __init__(self, net: nn.Module, loss_fn):
        super().__init__()
        self.net, self.loss_fn = net, loss_fn

    def training_step(self, batch, _):
        x, y = batch
        loss = self.loss_fn(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def plain_lightning(dm, kind, x, y, batch, epochs) -> float:
    model = build(dm, kind)
    module = PlainModule(model, model.task.loss)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="auto",
        devices=1,
    )
    t0 = time.perf_counter()
    trainer.fit(module, loader)
    return time.perf_counter() - t0


def astrops_side(dm, kind, x, y, batch, epochs) -> float:
    model = build(dm, kind)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return DeviceBatches(x, y, batch, shuffle=True, seed=1, group=STEPS_PER_CALL)

    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        accelerator="auto",
        devices=1,
        num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=Data())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", default="32,1024")
    ap.add_argument("--models", default="dense,cnn")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads, all sides (astrops default: 1)",
    )
    ap.add_argument(
        "--dense-hidden",
        default="64,32",
        help="dense widths (train.py's default model: 256,256,256)",
    )
    args = ap.parse_args()
    DENSE_HIDDEN[:] = [int(w) for w in args.dense_hidden.split(",")]
    torch.set_num_threads(args.threads)
    dm, x, y = tiled_data(args.n)
    print(
        f"{args.n} spectra, {args.epochs} epochs, {args.reps} alternating repetitions, "
        f"{os.cpu_count()} cores, {args.threads} torch thread(s), torch {torch.__version__}, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, dense {DENSE_HIDDEN}"
    )
    print(
        "| model | batch | bare samples/s | plain Lightning | astrops | plain/bare | astrops/bare "
        "| astrops/plain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sides = {"bare": bare, "plain": plain_lightning, "astrops": astrops_side}
    for kind in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            times = {k: [] for k in sides}
            for r in range(args.reps):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for name in order:
                    times[name].append(sides[name](dm, kind, x, y, batch, args.epochs))
            rate = {k: args.n * args.epochs / statistics.median(v) for k, v in times.items()}
            print(
                f"| {kind} | {batch} | {rate['bare']:.0f} | {rate['plain']:.0f} | "
                f"{rate['astrops']:.0f} | "
                f"{rate['plain'] / rate['bare']:.2f} | {rate['astrops'] / rate['bare']:.2f} | "
                f"{rate['astrops'] / rate['plain']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
