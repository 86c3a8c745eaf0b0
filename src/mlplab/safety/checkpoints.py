"""Checkpoint files: written atomically, read back only when they are mlplab checkpoints."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

import mlplab.results as results
from mlplab.config.stored import check_stored_config, with_current_targets
from mlplab.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through a temporary file in the same folder, so a file is either old or whole.

    A run killed while `last.ckpt` is being written keeps its previous `last.ckpt`; a write
    that fails (a full disk) removes its temporary file and names the checkpoint it was for.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        self.save_checkpoints([(checkpoint, Path(path))])

    def save_checkpoints(self, checkpoints: list[tuple[dict[str, Any], Path]]) -> None:
        """Each (checkpoint, path) saved atomically; several (a packed group's) are flushed to
        disk together, so the disk waits twice for all of them rather than twice for each."""
        partials: list[Path] = []
        try:
            for checkpoint, path in checkpoints:
                partials.append(write_partial(checkpoint, path))
            on_disk(partials)
        except BaseException:
            for partial in partials:
                partial.unlink(missing_ok=True)  # its space is what a retry needs
            raise
        for partial, (_, path) in zip(partials, checkpoints):
            os.replace(partial, path)
        # The renames themselves are only durable once the folders' entries are on disk.
        on_disk(list(dict.fromkeys(path.parent for _, path in checkpoints)))


def write_partial(checkpoint: dict[str, Any], path: Path) -> Path:
    """`checkpoint` written to a temporary file beside `path`; that file's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as file:
            file.write(buffer.getbuffer())
    except OSError as error:
        partial.unlink(missing_ok=True)
        size = f"the checkpoint needs {len(buffer.getbuffer()) / 2**20:.1f} MiB"
        raise OSError(error.errno, f"{error.strerror}; {size}", str(path)) from error
    return partial


def on_disk(paths: list[Path]) -> None:
    """Wait until the files or folders `paths` are on disk; an error names the one it hit.

    For several, one sync writes them all out first, and each fsync then only collects
    its file's outcome (Linux reports a failed write-back to the next fsync of the file).
    """
    if len(paths) > 1:
        os.sync()
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(final_name(path))) from error
        finally:
            os.close(descriptor)


def final_name(path: Path) -> Path:
    """The checkpoint a temporary `.name.partial` file stands for; other paths as they are."""
    if path.name.startswith(".") and path.name.endswith(".partial"):
        return path.with_name(path.name[1 : -len(".partial")])
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """An mlplab checkpoint's contents, loaded with weights_only=True; ConfigError otherwise.

    Its stored config is read as data: a network rebuilt from it goes through
    read_checkpoint_to_rebuild.
    """
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such checkpoint file; pass a .ckpt from a run's checkpoints/"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:100]
        raise ConfigError(
            f"{path} is not a readable checkpoint ({reason}); it is damaged or not a .ckpt "
            "written by mlplab: use another checkpoint of the run, or start the run again"
        ) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not (isinstance(hparams, dict) and "model" in hparams and "state_dict" in checkpoint):
        raise ConfigError(
            f"{path} is not an mlplab checkpoint (it holds no network and config of a run): "
            "pass a .ckpt from the checkpoints/ folder of a `python -m train` run"
        )
    return checkpoint


def read_checkpoint_to_rebuild(path: Path) -> dict[str, Any]:
    """A checkpoint whose network is rebuilt from its stored config: that config checked
    against conf/'s options (mlplab.config.stored) before anything is built from it."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    check_stored_config(hparams, path)
    hparams = checkpoint["hyper_parameters"] = with_current_targets(hparams)
    if not (isinstance(hparams.get("data"), dict) and "dataset" in hparams["data"]):
        raise ConfigError(
            f"{path} does not record the dataset it was trained on (an mlplab from before "
            "data=fashion_mnist and data=kmnist wrote it): train the run again"
        )
    return checkpoint


def checkpoint_file(path: Path) -> Path:
    """`path` itself, or for a run folder the best checkpoint its metrics.json names."""
    if not path.is_dir():
        return path
    metrics = results.read_metrics(path)
    if metrics is None:
        raise ConfigError(
            f"{path} is not a finished run (it has no {results.METRICS_FILE}): pass a run "
            "folder that `python -m train` completed, or a .ckpt file from its checkpoints/"
        )
    if not metrics.get("best_checkpoint"):
        raise ConfigError(
            f"{path} has no best checkpoint (the run's status is {metrics.get('status')!r}): "
            "pass a .ckpt file from its checkpoints/, or a run that completed"
        )
    return path / metrics["best_checkpoint"]
