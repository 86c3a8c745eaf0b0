"""Ctrl-C, SIGTERM and a cluster's pre-emption warning: finish the step, save last.ckpt, stop."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from mlplab.errors import RunInterrupted
from mlplab.results import LAST_CHECKPOINT

log = logging.getLogger(__name__)

# SIGUSR1 / SIGUSR2: what SLURM (`--signal`) and submitit send before pre-empting a job or at
# its time limit.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class StopOnSignal(Callback):
    """On SIGINT, SIGTERM, SIGUSR1 or SIGUSR2, save what a resume needs after the step and stop.

    The checkpoint is taken where Lightning's own step checkpoints are (after a training step),
    so the resumed run continues exactly where this one stopped. The run stops when the next
    step would begin, once the loggers have written the saved step's values, so the curves of
    the resumed run continue without a gap. A signal that arrives during the last step or the
    last validation lets the run finish instead.

    A pre-emption signal that something else was handling before the run started (submitit
    requeues its job on it) is passed on to that handler once the checkpoint is saved, so the
    requeued job finds the checkpoint in its folder. `save` says what is saved.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.saved_at: tuple[int, int] | None = None  # (epoch, step)
        self.saved = ""  # what was saved, for the message
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
        self.saved = self.save(trainer, pl_module)
        self.saved_at = (trainer.current_epoch, trainer.global_step)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """Save all a resume needs; return what was saved."""
        raise NotImplementedError

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.saved_at is None:
            return
        epoch, step = self.saved_at
        received = self.received
        message = f"stopped by {received.name} at epoch {epoch}, step {step}; saved {self.saved}"
        scheduler_handler = self.previous_handlers.get(received)
        if received in PREEMPTION_SIGNALS and callable(scheduler_handler):
            log.warning(f"{message}; passing {received.name} on to the job's scheduler")
            self._restore_handlers()
            os.kill(os.getpid(), received)  # handled at once, by the scheduler's own handler
        raise RunInterrupted(message, exit_code=128 + received.value)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()


class SaveOnSignal(StopOnSignal):
    """StopOnSignal for one run: saves `folder`/last.ckpt."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.path = Path(folder) / LAST_CHECKPOINT

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        trainer.save_checkpoint(self.path, weights_only=False)  # all a resume needs
        return str(self.path)
