"""Optuna searches: the study's SQLite file needs its folder before the sweeper opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SQLITE_PREFIX = "sqlite:///"


def sqlite_file(storage: str | None) -> Path | None:
    """The file of an Optuna storage URL such as sqlite:///outputs/optuna/study.db, if any."""
    if storage and storage.startswith(SQLITE_PREFIX):
        return Path(storage[len(SQLITE_PREFIX) :])
    return None


class StudyFolder(Callback):
    """Creates the folder of the study's SQLite file; SQLite creates the file, not its folder."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        study_file = sqlite_file(config.hydra.sweeper.storage)
        if study_file:
            study_file.parent.mkdir(parents=True, exist_ok=True)
