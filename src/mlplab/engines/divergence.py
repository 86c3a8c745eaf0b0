"""A training loss that became NaN or infinite: which copy, when, and what to change."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mlplab.errors import TrainingDiverged


def divergence(
    epoch: int, step: int, loss: float, last_finite_loss: tuple[int, float] | None, lr: float
) -> TrainingDiverged:
    """The error of a run whose loss became `loss` (NaN or infinite) at `step`."""
    last = (
        f"last finite loss {last_finite_loss[1]:.4g} at step {last_finite_loss[0]}"
        if last_finite_loss
        else "no finite loss before it"
    )
    return TrainingDiverged(
        f"training diverged at epoch {epoch}, step {step}: the loss is {loss} "
        f"({last}); lower optimizer.lr (now {lr:g}) or use an init with smaller weights"
    )


class DivergenceWatch:
    """Per copy (K of a packed group, or one network): its last finite loss, and its error
    once its loss became NaN or infinite."""

    def __init__(self, copies: int = 1) -> None:
        self.last_finite_losses: list[tuple[int, float] | None] = [None] * copies
        self.diverged: dict[int, TrainingDiverged] = {}

    def check(
        self,
        losses: torch.Tensor,
        epoch: int,
        step: int,
        lr_of: Callable[[int], float],
        every_n_steps: int,
    ) -> dict[int, TrainingDiverged]:
        """The copies whose loss at `step` (`losses`, (K,)) is the first not finite, with their
        errors; `lr_of(copy)` is the copy's learning rate.

        Reading the losses costs nothing on the CPU, but on an accelerator it makes the host
        wait for every step; there they are read only every `every_n_steps` steps. A NaN or
        infinite loss makes the weights NaN, so every later loss is too and it is still caught.
        """
        if losses.device.type != "cpu" and step % every_n_steps != 0:
            return {}
        new = {}
        for copy, value in enumerate(losses.tolist()):
            if copy in self.diverged:
                continue
            if math.isfinite(value):
                self.last_finite_losses[copy] = (step, value)
                continue
            last = self.last_finite_losses[copy]
            new[copy] = divergence(epoch, step, value, last, lr_of(copy))
        self.diverged |= new
        return new
