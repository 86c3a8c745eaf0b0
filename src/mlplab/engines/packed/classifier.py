"""The LightningModule of K packed jobs: each copy's loss, accuracy and divergence, one optimiser.

The loss that is back-propagated is the sum over copies of each copy's mean cross-entropy, so
each slice's gradient is the gradient its job would get alone.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.nn.functional import cross_entropy

from mlplab.engines.packed.network import PackedNetworks
from mlplab.engines.single.classifier import OptimizerFactory, SchedulerFactory, divergence
from mlplab.errors import TrainingDiverged


class CopySums:
    """Per copy: summed loss and correct predictions, and the example count, on the device."""

    def __init__(self, copies: int) -> None:
        self.copies = copies
        self.reset()

    def reset(self, device: torch.device | str = "cpu") -> None:
        self.loss_sum = torch.zeros(self.copies, dtype=torch.float32, device=device)
        self.correct = torch.zeros(self.copies, dtype=torch.int64, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor) -> None:
        """`logits` (K, N, C), `labels` (K, N), `losses` (K, N) per example."""
        self.loss_sum += losses.sum(dim=1)
        self.correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        self.count += labels.shape[1]

    def means(self) -> dict[str, torch.Tensor]:
        """{"acc", "loss"}, each (K,)."""
        return {"acc": self.correct / self.count, "loss": self.loss_sum / self.count}

    def load_copies(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Each copy's sums from a single run's checkpoint state (see copy_state)."""
        self.loss_sum = torch.stack([state["loss_sum"] for state in states])
        self.correct = torch.stack([state["correct"] for state in states])
        self.count = states[0]["count"].clone()

    def copy_state(self, copy: int) -> dict[str, torch.Tensor]:
        """Copy `copy`'s sums as a single run's Classifier keeps them."""
        return {
            "loss_sum": self.loss_sum[copy].clone(),
            "correct": self.correct[copy].clone(),
            "count": self.count.clone(),
        }


class PackedClassifier(L.LightningModule):
    """Trains the copies of `network` together; a copy whose loss diverges stops alone.

    After each epoch `epoch_results` holds each copy's train and validation means, and after
    testing `test_results` its test means ({"acc", "loss"} -> (K,) tensors).
    """

    def __init__(
        self,
        network: PackedNetworks,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        lr_scales: list[float] | None = None,
    ) -> None:
        """`lr_scales`: each copy's learning rate over the optimiser's (None: all the same)."""
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.lr_scales = lr_scales if lr_scales and set(lr_scales) != {1.0} else None
        self.lr_scale_weights: torch.Tensor | None = None  # lr_scales on the device
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        copies = network.copies
        self.training_sums = CopySums(copies)
        self.evaluation_sums = CopySums(copies)
        self.step_losses = torch.zeros(copies)  # each copy's loss at the last step
        self.diverged: dict[int, TrainingDiverged] = {}
        self.frozen: dict[int, list[torch.Tensor]] = {}  # a diverged copy's weights, kept as is
        self.last_finite_losses: list[tuple[int, float] | None] = [None] * copies
        self.epoch_results: dict[str, dict[str, torch.Tensor]] = {}
        self.test_results: dict[str, torch.Tensor] = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features)

    def active(self) -> list[int]:
        return [copy for copy in range(self.network.copies) if copy not in self.diverged]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        step = self.global_step
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        logits = self.network(features)
        losses = cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        copy_losses = losses.mean(dim=1)
        trained = copy_losses[self.active()] if self.diverged else copy_losses
        self.manual_backward(trained.sum())
        if self.lr_scales:
            before = [parameter.detach().clone() for parameter in self.network.stacked]
            optimizer.step()
            self._scale_steps(before)
        else:
            optimizer.step()
        for copy, weights in self.frozen.items():
            self.network.set_copy(copy, weights)
        self.step_losses = copy_losses.detach()
        self._stop_diverged_copies(step)
        self.training_sums.update(logits.detach(), labels, losses.detach())

    @torch.no_grad()
    def _scale_steps(self, before: list[torch.Tensor]) -> None:
        """Each copy's step times its learning rate's scale: the step its own rate takes."""
        scales = self.lr_scale_weights
        for parameter, start in zip(self.network.stacked, before):
            shape = (-1,) + (1,) * (parameter.dim() - 1)
            parameter.copy_(torch.lerp(start, parameter, scales.view(shape)))

    def copy_lr(self, copy: int) -> float:
        """Copy `copy`'s learning rate now."""
        lr = self.optimizers().param_groups[0]["lr"]
        return lr * self.lr_scales[copy] if self.lr_scales else lr

    def _stop_diverged_copies(self, step: int) -> None:
        """Freeze each copy whose loss became NaN or infinite at `step`, as a single run stops.

        Read every step on the CPU, where it costs nothing; on an accelerator every
        log_every_n_steps steps (a NaN loss makes its copy's weights NaN, so it stays NaN).
        """
        if self.step_losses.device.type != "cpu" and step % self.trainer.log_every_n_steps != 0:
            return
        for copy, value in enumerate(self.step_losses.tolist()):
            if copy in self.diverged:
                continue
            if math.isfinite(value):
                self.last_finite_losses[copy] = (step, value)
                continue
            last = self.last_finite_losses[copy]
            lr = self.copy_lr(copy)
            self.diverged[copy] = divergence(self.current_epoch, step, value, last, lr)
            self.frozen[copy] = [p.detach().clone() for p in self.network.copy_parameters(copy)]
        if not self.active():
            self.trainer.should_stop = True

    def on_train_start(self) -> None:
        # Fresh or restored from the jobs' checkpoints, the sums live where the weights do.
        sums = self.training_sums
        sums.loss_sum, sums.correct, sums.count = (
            total.to(self.device) for total in (sums.loss_sum, sums.correct, sums.count)
        )
        if self.lr_scales:  # on the device once, for every step's scaling
            dtype = self.network.stacked[0].dtype  # lerp takes the weights' own dtype
            self.lr_scale_weights = torch.tensor(self.lr_scales, device=self.device, dtype=dtype)

    def on_train_epoch_start(self) -> None:
        self.epoch_results = {}  # an epoch without validation has no val results

    def on_train_epoch_end(self) -> None:
        self.epoch_results["train"] = self.training_sums.means()
        self.training_sums.reset(self.device)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _evaluation_step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        logits = self.network(features)
        losses = cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        self.evaluation_sums.update(logits, labels, losses)

    def on_validation_epoch_start(self) -> None:
        self.evaluation_sums.reset(self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(*batch)

    def on_validation_epoch_end(self) -> None:
        self.epoch_results["val"] = self.evaluation_sums.means()

    def on_test_epoch_start(self) -> None:
        self.evaluation_sums.reset(self.device)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch  # the same test batch for every copy
        copies = self.network.copies
        self._evaluation_step(features.expand(copies, -1, -1), labels.expand(copies, -1))

    def on_test_epoch_end(self) -> None:
        self.test_results = self.evaluation_sums.means()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
