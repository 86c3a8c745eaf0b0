"""The LightningModule: cross-entropy loss, accuracy metrics and the optimiser around a network."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

STAGES = ("train", "val", "test")
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


METRIC_NAMES = ("acc", "loss")


def epoch_metrics(num_classes: int) -> nn.ModuleDict:
    """`{stage}_acc` and `{stage}_loss` for each stage, accumulated on the device."""
    metrics = {}
    for stage in STAGES:
        # Both skip per-step input checks: each check would wait for the device.
        metrics[f"{stage}_acc"] = MulticlassAccuracy(
            num_classes, average="micro", validate_args=False
        )
        metrics[f"{stage}_loss"] = MeanMetric(nan_strategy="disable")
    return nn.ModuleDict(metrics)


class Classifier(L.LightningModule):
    """Trains `network` on (features, labels) batches; logs train/val/test loss and accuracy.

    The optimiser is stepped by hand with a closure, so every torch.optim optimiser, L-BFGS
    included, trains through the same code.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 10,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_function = nn.CrossEntropyLoss()
        self.metrics = epoch_metrics(num_classes)
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(hparams or {}, logger=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features)

    def _update_metrics(self, stage: str, logits: torch.Tensor, labels: torch.Tensor, loss) -> None:
        self.metrics[f"{stage}_acc"].update(logits, labels)
        self.metrics[f"{stage}_loss"].update(loss, weight=len(labels))

    def _log_epoch_metrics(self, stage: str) -> None:
        for name in METRIC_NAMES:
            metric = self.metrics[f"{stage}_{name}"]
            self.log(f"{stage}/{name}", metric.compute())
            metric.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        optimizer = self.optimizers()
        first_evaluation: list[tuple[torch.Tensor, torch.Tensor]] = []

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            logits = self.network(features)
            loss = self.loss_function(logits, labels)
            self.manual_backward(loss)
            if not first_evaluation:
                first_evaluation.append((logits.detach(), loss.detach()))
            return loss

        optimizer.step(closure=closure)
        logits, loss = first_evaluation[0]
        self._update_metrics("train", logits, labels, loss)
        # Log only on the steps Lightning writes out: logging every step costs more than it shows.
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        features, labels = batch
        logits = self.network(features)
        self._update_metrics(stage, logits, labels, self.loss_function(logits, labels))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
