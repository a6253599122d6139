"""The LightningModule that trains a :class:`~astrops.models.spectrum_model.SpectrumModel`: loss,
metrics in physical units, calibration, optimiser.

It is the applied model plus training: the inference part (input transform → backbone → task head,
``predict_physical``, ``param_names``, ``meta``) is :class:`SpectrumModel`'s, and nothing here adds
to the state dict, so its checkpoints load into the plain module (what every reader of a model
builds, without Lightning). Everything needed to reuse it (transform, target codec, configs of its
parts, parameter names, lineage) is saved in the checkpoint as plain types and tensors, so
checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from astrops.metrics import ParameterMetrics
from astrops.models.spectrum_model import SpectrumModel
from astrops.models.tasks import Task
from astrops.models.transforms import SpectrumTransform
from astrops.scores import pit as sample_pit


class ParameterEstimator(SpectrumModel, L.LightningModule):
    """A :class:`SpectrumModel` that Lightning trains: loss, metrics, calibration, optimiser,
    checkpoint hook."""

    # Lightning's own device tracking, not SpectrumModel's look-up
    device = L.LightningModule.device

    def __init__(
        self,
        backbone: nn.Module,
        task: Task,
        transform: SpectrumTransform,
        parameters: list[str],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        train_metrics: bool = True,
        meta: dict | None = None,
    ):
        # SpectrumModel, then LightningModule
        super().__init__(backbone, task, transform, parameters, meta)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # one training_step runs a group of optimizer steps (astrops.data.batches): Lightning's
        # per-call cost is paid once per group, not once per step
        self.automatic_optimization = False
        # Training metrics are computed once per epoch on the whole training split with the epoch's
        # final weights (one forward pass), not accumulated per step: cheaper, and a truer
        # train-set figure.
        self.train_metrics = train_metrics
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence the suffix
        self.metrics = nn.ModuleDict(
            {
                "val_metrics": ParameterMetrics(parameters, **task.metric_options()),
                "test_metrics": ParameterMetrics(
                    parameters, confusion=True, **task.metric_options()
                ),
            }
        )
        self.history: list[dict[str, float]] = []
        self.test_results: dict[str, float] = {}
        self.test_outputs: dict[str, list[torch.Tensor]] = {}
        # per-parameter confusion matrices of the last test (classes only)
        self.confusion: list[torch.Tensor] = []

    # -- evaluation (forward and predict_physical are SpectrumModel's) ----------------------------
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
        """Loss and all metrics on (x, y) with the current weights, in eval mode, outside the
        Trainer.

        (x, y) go where the model is: after ``fit``/``test`` Lightning hands the module back on the
        CPU while the data module's tensors stay on the accelerator (found by ``make gpu-check`` on
        an H100)."""
        x, y = x.to(self.device), y.to(self.device)
        was_training = self.training
        self.eval()  # no dropout, batch-norm running statistics
        out = self(x)
        self.train(was_training)
        metrics = ParameterMetrics(self.param_names, **self.task.metric_options()).to(x.device)
        metrics.update_decoded(self.task.decode(out), y, self.task.codec)
        return {
            f"{prefix}/loss": float(self.task.loss(out, y)),
            **metrics.compute(prefix, self.task.codec.std),
        }

    def calibrate(self, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
        """Fit the task head's post-hoc calibration buffers on the validation split (Kuleshov et
        al. 2018; Guo et al. 2017) and return the factors for logging,
        ``calibration/<buffer>/<parameter>``; {} when the task calibrates nothing. The forward pass
        runs in eval mode; the previous mode is restored."""
        if not self.task.calibrate:
            return {}
        x_val, y_val = x_val.to(self.device), y_val.to(self.device)  # see evaluate
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self(x_val)
        self.train(was_training)
        factors = self.task.calibration_summary(self.task.fit_calibration(out, y_val))
        return {
            f"calibration/{name}/{p}": float(v)
            for name, t in factors.items()
            for p, v in zip(self.param_names, t, strict=True)
        }

    # -- training loop ----------------------------------------------------------------------
    def training_step(self, batch, batch_idx) -> None:
        """One optimizer step per mini-batch of the group (a single ``(x, y)`` is a group of one):
        forward, loss, backward, step, exactly as Lightning's automatic loop would, in order.

        The loss is summed here and logged once per epoch: ``self.log`` on every step costs more
        than a tiny step."""
        opt = self.optimizers()
        for x, y in batch if isinstance(batch, list) else [batch]:
            loss = self.task.loss(self(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            self._train_loss = self._train_loss + loss.detach() * len(x)
            self._train_count += len(x)
        # Lightning logs per-epoch metrics at its count of stepped batches, which it raises by
        # one after this call: keep that count equal to the optimizer steps, as in its
        # automatic loop, so MLflow's step axis is unchanged by grouping
        self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step - 1

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        out = self(x)
        loss = self.task.loss(out, y)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=len(x),
            sync_dist=True,
            prog_bar=stage == "val",
        )
        with torch.no_grad():
            dec = self.task.decode(out.detach())
            self.metrics[f"{stage}_metrics"].update_decoded(dec, y, self.task.codec)
        if stage == "test":
            pit = sample_pit(dec["samples"], y) if "samples" in dec else None
            for name, t in (
                ("pred", dec["value"]),
                ("true", y),
                ("std", dec.get("std")),
                ("probs", dec.get("probs")),
                ("pit", pit),
                ("samples", dec.get("samples")),
            ):
                if t is not None:
                    self.test_outputs.setdefault(name, []).append(t.cpu())
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _epoch_end(self, stage: str) -> dict[str, float]:
        metrics = self.metrics[f"{stage}_metrics"]
        values = metrics.compute(stage, self.task.codec.std)
        # torchmetrics already synchronised across processes
        self.log_dict(values, sync_dist=False)
        metrics.reset()
        return values

    def on_train_epoch_start(self) -> None:
        self._train_loss, self._train_count = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        self._step_scheduler()
        if self._train_count:
            self.log("train/loss", self._train_loss / self._train_count, sync_dist=True)
        values: dict[str, float] = {}
        data = (
            getattr(self.trainer.datamodule, "tensors", {}).get("train")
            if self.trainer.datamodule
            else None
        )
        if self.train_metrics and data is not None:
            values = {
                k: v for k, v in self.evaluate(*data, prefix="train").items() if k != "train/loss"
            }
            self.log_dict(values, sync_dist=False, rank_zero_only=True)
        logged = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.endswith("/loss")
        }
        self.history.append(
            {
                "epoch": self.current_epoch,
                **logged,
                **{k: v for k, v in values.items() if "/R2/" in k},
            }
        )

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self.test_outputs = {}

    def on_test_epoch_end(self) -> None:
        self.confusion = [c.cpu() for c in self.metrics["test_metrics"].confusion_matrices()]
        self.test_results = self._epoch_end("test")

    def _step_scheduler(self) -> None:
        """The epoch's learning-rate step, where Lightning's automatic loop takes it (after
        validation, at the training epoch's end): ``ReduceLROnPlateau`` on ``val/loss``."""
        sched = self.lr_schedulers()
        if sched is None:
            return
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitored = self.trainer.callback_metrics.get("val/loss")
            if monitored is not None:
                sched.step(monitored)
        else:
            sched.step()

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise RuntimeError("this model was loaded for inference: no optimizer configured")
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        # stepped by _step_scheduler at each epoch's end, on val/loss (manual optimization)
        return {"optimizer": opt, "lr_scheduler": self.scheduler_factory(optimizer=opt)}

    # -- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["astrops"] = self.meta
