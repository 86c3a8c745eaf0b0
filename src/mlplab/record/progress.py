"""The progress a run shows while it trains: Lightning's bar on a terminal, and one plain line
per epoch where the output is a file (a log, a cluster job, CI), which a bar's redraws and
cursor movements would fill with fragments."""

from __future__ import annotations

import logging
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

log = logging.getLogger(__name__)
SHOWN = ("train/loss", "val/acc")  # on each epoch's line, where the run measured them


class EpochLines(ProgressBar):
    """`epoch 3/15  train/loss 0.1234  val/acc 0.9712  4.1 s` after each epoch.

    An epoch's train/loss is logged by the module's own epoch-end hook, which Lightning calls
    after the callbacks' one: the line is written when the next epoch starts, or training ends.
    A packed group shows each job's values; a job that stopped before the epoch, `-`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.started = 0.0
        self.finished: tuple[int, float] | None = None  # the epoch ended, and its seconds
        self.trained: list[int] | None = None  # the copies of a packed group the epoch trains

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_finished(trainer, pl_module)
        self.started = time.perf_counter()
        active = getattr(pl_module, "active", None)
        self.trained = active() if active else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finished = (trainer.current_epoch, time.perf_counter() - self.started)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_finished(trainer, pl_module)

    def write_finished(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.finished is None or not self.enabled:
            return
        (epoch, seconds), self.finished = self.finished, None
        line = [f"epoch {epoch + 1}/{trainer.max_epochs}"]
        for key, values in shown_values(trainer, pl_module).items():
            shown = [
                f"{value:.4f}" if self.trained is None or copy in self.trained else "-"
                for copy, value in enumerate(values)
            ]
            line.append(f"{key} " + " ".join(shown))
        log.info("  ".join([*line, f"{seconds:.1f} s"]))


def shown_values(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, list[float]]:
    """The epoch's SHOWN values: a single run's, or each job's of a packed group (its
    epoch_results, by copy)."""
    per_copy = getattr(pl_module, "epoch_results", None)
    values = {}
    for key in SHOWN:
        stage, _, name = key.partition("/")
        if per_copy is not None and name in per_copy.get(stage, {}):
            values[key] = [float(value) for value in per_copy[stage][name]]
        elif key in trainer.callback_metrics:
            values[key] = [float(trainer.callback_metrics[key])]
    return values


def progress_bar(refresh_rate: int) -> ProgressBar:
    """Lightning's bar, redrawn every `refresh_rate` steps, when the output is a terminal;
    else EpochLines. 0 shows neither."""
    if sys.stderr.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    lines = EpochLines()
    if refresh_rate == 0:
        lines.disable()
    return lines
