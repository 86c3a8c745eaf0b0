"""Where a study lives: an Optuna storage URL, a SQLite file under outputs/ by default."""

from __future__ import annotations

import fcntl
import functools
import os
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
# Two searches writing one SQLite study wait this long for each other's writes.
SQLITE_TIMEOUT_SECONDS = 60


def sqlite_file(storage: str | None) -> Path | None:
    """The file of an Optuna storage URL such as sqlite:///outputs/optuna/study.db, if any."""
    if storage and storage.startswith(SQLITE_PREFIX):
        return Path(storage[len(SQLITE_PREFIX) :])
    return None


def open_storage(url: str):
    """Optuna's storage at `url`, opened once per process: the search and each trial it trains
    here share it (opening checks the tables' schema, a tenth of a second each time)."""
    return opened_storage(url, os.getpid())  # a forked process opens its own connections


@functools.cache
def opened_storage(url: str, process: int):
    """Optuna's storage at `url`; a SQLite file's folder is created (SQLite makes only the file).

    Opening a new SQLite study creates its tables, and two searches that do so at once both
    try (`table studies already exists`): each opens it holding a lock on `<file>.lock`.
    """
    import optuna

    study_file = sqlite_file(url)
    if study_file is None:
        return optuna.storages.RDBStorage(url)
    study_file.parent.mkdir(parents=True, exist_ok=True)
    with study_file.with_name(study_file.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
        )
