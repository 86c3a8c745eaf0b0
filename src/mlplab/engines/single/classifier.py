"""The LightningModule: cross-entropy loss, accuracy metrics and the optimiser around a network."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn.functional import cross_entropy
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mlplab.engines.divergence import DivergenceWatch
from mlplab.engines.epoch_sums import EpochSums
from mlplab.results import TRAIN_LOSS_STEP, VAL_ACC, VAL_LOSS, VALIDATION, metric_key

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


METRIC_NAMES = ("acc", "loss")
EVALUATION_STAGES = ("val", "test")


def evaluation_metrics(num_classes: int) -> nn.ModuleDict:
    """`{stage}_acc` and `{stage}_loss` for validation and test, accumulated on the device."""
    metrics = {}
    for stage in EVALUATION_STAGES:
        # Both skip per-step input checks: each check would wait for the device. The loss
        # metric is fed one loss per example, so its mean weighs every example the same
        # whatever the batch sizes and the number of processes.
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
        self.training_sums = EpochSums()
        self.metrics = evaluation_metrics(num_classes)
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(hparams or {}, logger=False)
        self.divergence_watch = DivergenceWatch()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features)

    def _log_evaluation_metrics(self, stage: str) -> None:
        for name in METRIC_NAMES:
            metric = self.metrics[f"{stage}_{name}"]
            self.log(metric_key(stage, name), metric.compute())
            metric.reset()

    def _stop_if_diverged(self, loss: torch.Tensor, step: int) -> None:
        """Raise TrainingDiverged when `loss` is NaN or infinite."""
        diverged = self.divergence_watch.check(
            loss.unsqueeze(0),
            self.current_epoch,
            step,
            lr_of=lambda _: self.optimizers().param_groups[0]["lr"],
            every_n_steps=self.trainer.log_every_n_steps,
        )
        if diverged:
            raise diverged[0]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        step = self.global_step
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
        self._stop_if_diverged(loss, step)
        self.training_sums.update(logits.unsqueeze(0), labels.unsqueeze(0), loss.unsqueeze(0))
        # Log only on the steps Lightning writes out: logging every step costs more than it shows.
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log(TRAIN_LOSS_STEP, loss)

    def on_train_start(self) -> None:
        # Fresh or restored from a checkpoint, the sums live where the weights do.
        self.training_sums.to(self.device)

    def on_train_epoch_end(self) -> None:
        means = self.training_sums.means(self._sum_over_processes)
        for name in METRIC_NAMES:
            self.log(metric_key("train", name), means[name][0])
        self.training_sums.reset(self.device)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        features, labels = batch
        logits = self.network(features)
        self.metrics[f"{stage}_acc"].update(logits, labels)
        self.metrics[f"{stage}_loss"].update(cross_entropy(logits, labels, reduction="none"))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation_metrics("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation_metrics("test")

    def _sum_over_processes(self, total: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(total, reduce_op="sum")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The epoch's training sums so far, over every process: a run resumed mid-epoch
        # reports the same epoch numbers as one that was never stopped. (Every process
        # builds the checkpoint; only the first writes it.)
        checkpoint["training_sums"] = self.training_sums.copy_state(0, self._sum_over_processes)
        # The best checkpoint's validation numbers are the ones metrics.json reports.
        validated = self.trainer.callback_metrics
        checkpoint[VALIDATION] = {
            key: float(validated[key]) for key in (VAL_ACC, VAL_LOSS) if key in validated
        }
        # Dropout draws from the global generator: a resumed run must draw the same masks.
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "training_sums" in checkpoint and self.global_rank == 0:
            # The first process continues from every process's sums; the others from zero.
            self.training_sums.load_copies([checkpoint["training_sums"]])
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if "cuda_rng_states" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
