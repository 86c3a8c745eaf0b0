"""What mlplab.engines.lightning_internals takes from Lightning holds for the installed Lightning.

Each test names the internal it checks: the trainer's checkpoint connector, where the training
loader's state sits in a checkpoint, and ModelCheckpoint's record of its best files.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from mlplab.engines.lightning_internals import (
    is_among_best,
    keep_among_best,
    trainer_checkpoint,
    training_loader_state,
    with_training_loader_state,
)

# The validation score of each epoch: improves, falls back, ties, then beats everything.
SCORES = [0.2, 0.5, 0.3, 0.5, 0.6]


class StatefulLoader(DataLoader):
    """A loader that reports how many epochs it started, as mlplab's batch order does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epochs_started = 0

    def __iter__(self):
        self.epochs_started += 1
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epochs_started": self.epochs_started}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epochs_started = state["epochs_started"]


class ScriptedScores(L.LightningModule):
    """One weight; its val/acc each epoch is the next of SCORES."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx) -> None:
        self.log("val/acc", SCORES[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return StatefulLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)


def best_of_top_2(folder: Path) -> ModelCheckpoint:
    return ModelCheckpoint(
        dirpath=folder,
        filename="epoch{epoch}",
        monitor="val/acc",
        mode="max",
        save_top_k=2,
        enable_version_counter=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trainer that fitted ScriptedScores for len(SCORES) epochs, and its ModelCheckpoint."""
    folder = tmp_path_factory.mktemp("internals")
    best = best_of_top_2(folder)
    trainer = L.Trainer(
        max_epochs=len(SCORES),
        callbacks=[best],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(ScriptedScores())
    return trainer, best, folder


def test_the_checkpoint_connector_dumps_what_save_checkpoint_writes(trained):
    trainer, _, folder = trained
    trainer.save_checkpoint(folder / "saved.ckpt")
    saved = torch.load(folder / "saved.ckpt", weights_only=True)
    dumped = trainer_checkpoint(trainer)
    assert dumped.keys() == saved.keys()
    assert dumped["global_step"] == saved["global_step"] == 2 * len(SCORES)


def test_the_training_loader_state_is_where_it_is_read_and_replaced(trained):
    trainer, _, _ = trained
    checkpoint = trainer_checkpoint(trainer)
    assert training_loader_state(checkpoint) == {"epochs_started": len(SCORES)}
    replaced = {**checkpoint, "loops": with_training_loader_state(checkpoint, {"epochs": 1})}
    assert training_loader_state(replaced) == {"epochs": 1}
    assert training_loader_state(checkpoint) == {"epochs_started": len(SCORES)}  # a copy


def test_keeping_the_best_files_leaves_the_state_modelcheckpoint_leaves(trained):
    _, lightning_kept, folder = trained
    replayed = best_of_top_2(folder)
    pushed_out = []
    for epoch, value in enumerate(SCORES):
        score = torch.tensor(value)
        if is_among_best(replayed, score):
            path = replayed.format_checkpoint_name({"epoch": torch.tensor(epoch)})
            pushed_out.append(keep_among_best(replayed, path, score))
    expected, state = lightning_kept.state_dict(), replayed.state_dict()
    for key in ("best_model_path", "best_model_score", "kth_best_model_path", "kth_value"):
        assert state[key] == expected[key], key
    assert state["best_k_models"] == expected["best_k_models"]
    # What Lightning removed is what keeping the best pushes out.
    kept_files = {path.name for path in Path(lightning_kept.dirpath).glob("epoch*.ckpt")}
    assert kept_files == {Path(path).name for path in expected["best_k_models"]}
    # 0.3 pushes out 0.2, the second 0.5 pushes out 0.3, and 0.6 the first 0.5 of the tie.
    epochs = [0, 2, 1]
    names = [Path(replayed.format_checkpoint_name({"epoch": torch.tensor(e)})).name for e in epochs]
    assert [Path(path).name for path in pushed_out if path] == names
