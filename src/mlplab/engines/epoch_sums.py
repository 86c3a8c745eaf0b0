"""The epoch's loss and accuracy as sums per copy: K copies of a packed group, or one network."""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over every process


def unchanged(total: torch.Tensor) -> torch.Tensor:
    return total


class EpochSums:
    """Per copy: the summed loss and correct predictions, and the example count, on the device.

    Training adds to these every step, where a torchmetrics update would cost more Python time
    than the step's arithmetic. They are plain tensors rather than buffers, so that a module
    converted to 16-bit precision still sums the loss in float32. A single run's checkpoint
    holds one copy's sums as scalars (copy_state).
    """

    def __init__(self, copies: int = 1) -> None:
        self.copies = copies
        self.reset()

    def reset(self, device: torch.device | str = "cpu") -> None:
        self.loss_sum = torch.zeros(self.copies, dtype=torch.float32, device=device)
        self.correct = torch.zeros(self.copies, dtype=torch.int64, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        losses: torch.Tensor,
        copies: torch.Tensor | None = None,
    ) -> None:
        """`logits` (K, N, C), `labels` (K, N), `losses` (K,): each copy's mean loss; with
        `copies` (indices), the rows are those copies' only."""
        examples = labels.shape[1]
        correct = (logits.argmax(dim=2) == labels).sum(dim=1)
        if copies is None:
            self.loss_sum += losses * examples
            self.correct += correct
        else:
            self.loss_sum.index_add_(0, copies, (losses * examples).to(self.loss_sum.dtype))
            self.correct.index_add_(0, copies, correct)
        self.count += examples

    def totals(self, reduce: Reduce = unchanged) -> dict[str, torch.Tensor]:
        """The sums over every process."""
        return {
            "loss_sum": reduce(self.loss_sum.clone()),
            "correct": reduce(self.correct.clone()),
            "count": reduce(self.count.clone()),
        }

    def means(self, reduce: Reduce = unchanged) -> dict[str, torch.Tensor]:
        """{"acc", "loss"}, each (K,), over every process's examples."""
        totals = self.totals(reduce)
        return {
            "acc": totals["correct"] / totals["count"],
            "loss": totals["loss_sum"] / totals["count"],
        }

    def copy_state(self, copy: int, reduce: Reduce = unchanged) -> dict[str, torch.Tensor]:
        """Copy `copy`'s sums over every process, as a single run's checkpoint holds them."""
        totals = self.totals(reduce)
        return {
            "loss_sum": totals["loss_sum"][copy],
            "correct": totals["correct"][copy],
            "count": totals["count"],
        }

    def load_copies(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Each copy's sums from a single run's checkpoint state (see copy_state)."""
        self.loss_sum = torch.stack([state["loss_sum"] for state in states])
        self.correct = torch.stack([state["correct"] for state in states])
        self.count = states[0]["count"].clone()

    def to(self, device: torch.device) -> None:
        self.loss_sum, self.correct, self.count = (
            total.to(device) for total in (self.loss_sum, self.correct, self.count)
        )
