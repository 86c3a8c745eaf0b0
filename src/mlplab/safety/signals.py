"""Ctrl-C and SIGTERM: finish the current training step, save last.ckpt, stop the run."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from mlplab.errors import RunInterrupted
from mlplab.results import LAST_CHECKPOINT

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SaveOnSignal(Callback):
    """On SIGINT or SIGTERM, save last.ckpt in `folder` after the current step and stop.

    The checkpoint is taken where Lightning's own step checkpoints are (after a training step),
    so the resumed run continues exactly where this one stopped. The run stops when the next
    step would begin, once the loggers have written the saved step's values, so the curves of
    the resumed run continue without a gap. A signal that arrives during the last step or the
    last validation lets the run finish instead.
    """

    def __init__(self, folder: str) -> None:
        self.path = Path(folder) / LAST_CHECKPOINT
        self.received: signal.Signals | None = None
        self.saved_at: tuple[int, int] | None = None  # (epoch, step)
        self.previous_handlers: dict[signal.Signals, Any] = {}

    def _receive(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        self.saved_at = None
        self.previous_handlers = {sig: signal.signal(sig, self._receive) for sig in STOP_SIGNALS}

    def _restore_handlers(self) -> None:
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)
        self.previous_handlers = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.received is None or self.saved_at is not None:
            return
        trainer.save_checkpoint(self.path)
        self.saved_at = (trainer.current_epoch, trainer.global_step)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.saved_at is None:
            return
        epoch, step = self.saved_at
        raise RunInterrupted(
            f"stopped by {self.received.name} at epoch {epoch}, step {step}; saved {self.path}",
            exit_code=128 + self.received.value,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
