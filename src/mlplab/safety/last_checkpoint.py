"""last.ckpt: the state a stopped run continues from, every few steps and at each epoch's end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from mlplab.results import LAST_CHECKPOINT


class LastCheckpoint(Checkpoint):
    """Saves `folder`/last.ckpt every `every_n_train_steps` steps and at the end of each epoch.

    At the end of an epoch it saves after that epoch's validation, where Lightning's own
    checkpoints are taken, so a run resumed from there goes on with the next epoch. (Lightning's
    ModelCheckpoint writes its last checkpoint at an epoch's end only when the monitored
    metric improved, so it cannot be the one that keeps last.ckpt current.) As a Checkpoint,
    Lightning calls it after the other callbacks, so what it saves includes their updates
    of this step or epoch, such as the best checkpoint's score.
    """

    def __init__(self, folder: str, every_n_train_steps: int = 500) -> None:
        self.path = Path(folder) / LAST_CHECKPOINT
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step % self.every_n_train_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)  # all a resume needs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # all a resume needs
