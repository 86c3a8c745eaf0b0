"""The LightningModule of K packed jobs: each copy's loss, accuracy and divergence, one optimiser.

The loss that is back-propagated is the sum over copies of each copy's mean cross-entropy, so
each slice's gradient is the gradient its job would get alone. A copy that stopped leaves the
network and the optimiser's state (PackedNetworks.keep): its weights stay as they were, and the
batches, the products, the loss and the optimiser's step are the other copies' only.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from mlplab.engines.divergence import DivergenceWatch
from mlplab.engines.epoch_sums import EpochSums
from mlplab.engines.packed.network import PackedNetworks
from mlplab.engines.single.classifier import OptimizerFactory, SchedulerFactory
from mlplab.errors import KnownError


def mean_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each copy's mean cross-entropy over its batch: logits (K, N, C), labels (K, N) -> (K,)."""
    return cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(dim=1)


def selected(tensor: torch.Tensor, copies: torch.Tensor | None) -> torch.Tensor:
    """The slices `copies` of a tensor with the copies first (all of it when None)."""
    return tensor if copies is None else tensor.index_select(0, copies)


class PackedClassifier(L.LightningModule):
    """Trains the copies of `network` together; a copy whose loss diverges, or that a search
    prunes, stops alone.

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
        self.training_sums = EpochSums(copies)
        self.evaluation_sums = EpochSums(copies)
        self.step_losses = torch.zeros(copies)  # each copy's loss at the last step
        self.divergence_watch = DivergenceWatch(copies)
        self.running: torch.Tensor | None = None  # the indices of the active copies once any stop
        self.before_step: list[torch.Tensor] = []  # the weights before a step that lr_scales scale
        self.pruned: dict[int, KnownError] = {}
        self.epoch_results: dict[str, dict[str, torch.Tensor]] = {}
        self.test_results: dict[str, torch.Tensor] = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features)

    @property
    def stopped(self) -> dict[int, KnownError]:
        """The copies that stopped before the end, with their errors: diverged, or pruned."""
        return {**self.divergence_watch.diverged, **self.pruned}

    def active(self) -> list[int]:
        return [copy for copy in range(self.network.copies) if copy not in self.stopped]

    def stop_copy(self, copy: int, error: KnownError) -> None:
        """Stop copy `copy`'s updates for good (its weights and statistics stay as they are)."""
        self.pruned[copy] = error
        self.freeze_copy(copy)

    def freeze_copy(self, copy: int) -> None:
        """Take copy `copy` out of the network and out of the optimiser's state, so the others
        train as a group of their own; it stopped already (diverged or pruned)."""
        active = self.active()
        self.running = torch.tensor(active, dtype=torch.long, device=self.device)
        parameters = list(self.network.stacked)
        kept = self.network.keep(active)
        self._optimize_instead(dict(zip(parameters, self.network.stacked)), kept)
        self.before_step = []  # the running copies' shapes from now on
        if not active:
            self.trainer.should_stop = True

    @torch.no_grad()
    def _optimize_instead(self, held: dict[nn.Parameter, nn.Parameter], kept: torch.Tensor) -> None:
        """The optimiser steps each new Parameter of `held` in place of its old one, with the
        rows `kept` of each state tensor laid out as the parameter (Adam's moments, SGD's
        momentum): the stopped copies' are dropped, so the step costs nothing for them (their
        files keep them as they were)."""
        optimizer = self.optimizers().optimizer
        for group in optimizer.param_groups:
            group["params"] = [held.get(parameter, parameter) for parameter in group["params"]]
        for old, new in held.items():
            values = optimizer.state.pop(old, {})
            optimizer.state[new] = {
                name: value.index_select(0, kept)
                if torch.is_tensor(value) and value.shape == old.shape
                else value
                for name, value in values.items()
            }

    def running_rows(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """The active copies' rows of each of `tensors` (K, ...)."""
        return [selected(tensor, self.running) for tensor in tensors]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        running = self.running  # the copies this step trains, whichever stop at its end
        features, labels = self.running_rows(*batch)
        step = self.global_step
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        logits = self.network(features)
        copy_losses = mean_losses(logits, labels)
        self.manual_backward(copy_losses.sum())
        if self.lr_scales:
            self._keep_weights_before_step()
            optimizer.step()
            self._scale_steps(running)
        else:
            optimizer.step()
        copy_losses = copy_losses.detach()
        if running is None:
            self.step_losses = copy_losses
        else:  # a stopped copy keeps the loss it stopped at
            self.step_losses = self.step_losses.index_copy(0, running, copy_losses)
        self._stop_diverged_copies(step)
        self.training_sums.update(logits.detach(), labels, copy_losses, running)

    @torch.no_grad()
    def _keep_weights_before_step(self) -> None:
        """The running copies' weights before the step, in buffers kept between steps."""
        stacked = self.network.stacked
        if not self.before_step:
            self.before_step = [torch.empty_like(parameter) for parameter in stacked]
        for start, parameter in zip(self.before_step, stacked):
            start.copy_(parameter)

    @torch.no_grad()
    def _scale_steps(self, running: torch.Tensor | None) -> None:
        """Each running copy's step times its learning rate's scale: the step its own rate
        takes."""
        scales = selected(self.lr_scale_weights, running)
        for parameter, start in zip(self.network.stacked, self.before_step):
            shape = (-1,) + (1,) * (parameter.dim() - 1)
            parameter.lerp_(start, 1 - scales.view(shape))  # start + scale * (end - start)

    def copy_lr(self, copy: int) -> float:
        """Copy `copy`'s learning rate now."""
        lr = self.optimizers().param_groups[0]["lr"]
        return lr * self.lr_scales[copy] if self.lr_scales else lr

    def _stop_diverged_copies(self, step: int) -> None:
        """Freeze each copy whose loss became NaN or infinite at `step`, as a single run stops."""
        diverged = self.divergence_watch.check(
            self.step_losses,
            self.current_epoch,
            step,
            lr_of=self.copy_lr,
            every_n_steps=self.trainer.log_every_n_steps,
        )
        for copy in diverged:
            self.freeze_copy(copy)

    def on_train_start(self) -> None:
        # Fresh or restored from the jobs' checkpoints, the sums live where the weights do.
        self.training_sums.to(self.device)
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
        features, labels = self.running_rows(features, labels)
        logits = self.network(features)
        self.evaluation_sums.update(logits, labels, mean_losses(logits, labels), self.running)

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
