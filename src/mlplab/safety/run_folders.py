"""Run folders: a name no other run shares, and a check that it can be written before training."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mlplab.errors import ConfigError, one_line_errors

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


class OutputFolderCheck(Callback):
    """Hydra callback: refuse an output folder that cannot be written, before anything runs."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with one_line_errors():
            check_writable(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with one_line_errors():
            check_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
