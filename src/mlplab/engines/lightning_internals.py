"""The parts of Lightning that are not its public API and that mlplab's packed training uses.

A packed trainer writes each job's checkpoints in the format a single run's trainer writes, so
that `evaluate`, `predict` and `resume=` take them as they are. That needs three things
Lightning keeps to itself, all here: the trainer's checkpoint as a dict, where the training
loader's state sits in it, and a ModelCheckpoint's record of its best files (kept per job, so
that the callback's state in each job's checkpoint is the one its single run would save).
lightning is bounded in pyproject.toml; tests/test_lightning_internals.py checks each of them
against the installed version.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


def trainer_checkpoint(trainer: L.Trainer) -> dict[str, Any]:
    """The checkpoint `trainer.save_checkpoint` would write, as a dict: all a resume needs."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def training_loader_state(checkpoint: dict[str, Any]) -> Any:
    """The state of the training loader (its sampler's batch order) in a trainer's checkpoint."""
    return checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


def with_training_loader_state(checkpoint: dict[str, Any], state: Any) -> dict[str, Any]:
    """`checkpoint`'s loops with the training loader's state replaced by `state`."""
    loops = checkpoint["loops"]
    fit_loop = loops["fit_loop"]
    fit_state = {**fit_loop["state_dict"], "combined_loader": [state]}
    return {**loops, "fit_loop": {**fit_loop, "state_dict": fit_state}}


def is_among_best(callback: ModelCheckpoint, score: torch.Tensor) -> bool:
    """Whether a checkpoint scoring `score` joins `callback`'s best `save_top_k`, as Lightning
    decides it (ties keep the files already kept)."""
    if callback.save_top_k == 0:
        return False
    if callback.save_top_k == -1 or len(callback.best_k_models) < callback.save_top_k:
        return True
    kth = callback.best_k_models[callback.kth_best_model_path]
    return bool(score > kth if callback.mode == "max" else score < kth)


def keep_among_best(callback: ModelCheckpoint, path: str, score: torch.Tensor) -> str | None:
    """Record the file at `path` among `callback`'s best; return the file it pushes out, if any.

    Updates the fields ModelCheckpoint keeps (and saves in its state) as its own saving does.
    """
    k = len(callback.best_k_models) + 1 if callback.save_top_k == -1 else callback.save_top_k
    pushed_out = None
    if len(callback.best_k_models) == k:
        pushed_out = callback.kth_best_model_path
        callback.best_k_models.pop(pushed_out)
    callback.current_score = score
    callback.best_k_models[path] = score
    worst, best = (min, max) if callback.mode == "max" else (max, min)
    if len(callback.best_k_models) == k:
        callback.kth_best_model_path = worst(callback.best_k_models, key=callback.best_k_models.get)
        callback.kth_value = callback.best_k_models[callback.kth_best_model_path]
    callback.best_model_path = best(callback.best_k_models, key=callback.best_k_models.get)
    callback.best_model_score = callback.best_k_models[callback.best_model_path]
    return pushed_out if pushed_out != path else None
