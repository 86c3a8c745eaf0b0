"""Run folders: a name no other run shares, writable, and written by one run at a time."""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mlplab.errors import ConfigError, one_line_errors
from mlplab.results import LOCK_FILE

# One value per process: every job of a sweep shares its folder, two processes never do
# (the process id differs between live processes, the random part between machines).
UNIQUE_SUFFIX = f"{os.getpid()}-{secrets.token_hex(2)}"


def register_unique_suffix_resolver() -> None:
    """`${unique_suffix:}` in a config: this process's id and a random part, e.g. 4321-9f3a."""
    OmegaConf.register_new_resolver("unique_suffix", lambda: UNIQUE_SUFFIX, replace=True)


def check_writable(folder: Path, key: str) -> None:
    """Create `folder` and write a file in it; ConfigError naming `key` if that fails."""
    probe = folder / ".write_check"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot write the output folder {folder} ({error.strerror or error}): "
            f"set {key} to a folder you can write"
        ) from None


def lock_run_folder(folder: Path) -> TextIO:
    """Hold `folder`'s lock until the returned file is closed or this process ends.

    ConfigError naming the holder if another process holds it. The lock is the operating
    system's (flock), so a process that was killed holds nothing: its successor takes over.
    """
    folder.mkdir(parents=True, exist_ok=True)
    file = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "another process"
        file.close()
        raise ConfigError(
            f"{folder} is being written by {holder}: one run writes a folder at a time; "
            "wait for that run to end, or stop it, then try again"
        ) from None
    file.seek(0)
    file.truncate()
    file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    file.flush()
    return file


@contextmanager
def one_writer(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs; ConfigError if another run holds it.

    The other processes of a DDP run write into their first process's folder: they neither
    take nor check the lock.
    """
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        yield
        return
    lock = lock_run_folder(folder)
    try:
        yield
    finally:
        lock.close()


class RunFolderGuard(Callback):
    """Hydra callback: refuse an output folder that cannot be written, or that another run is
    writing, before Hydra writes anything into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.run.dir)
        with one_line_errors():
            check_writable(folder, "hydra.run.dir")
            with one_writer(folder):
                pass  # only the check: the job itself holds the lock while it runs

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with one_line_errors():
            check_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
