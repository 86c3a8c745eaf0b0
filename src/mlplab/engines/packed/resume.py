"""A packed group that finds every job's last.ckpt in its folder continues as a group.

That is a requeued or re-run sweep (sweep folders are new for every sweep otherwise), as for
a job trained alone (mlplab.engines.single.train.resume_checkpoint). The jobs' single-network
checkpoints are stacked back into the checkpoint the packed trainer continues from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

import mlplab.results as results
from mlplab.data.mnist import MNISTDataModule
from mlplab.engines.lightning_internals import with_training_loader_state
from mlplab.engines.packed.checkpoints import PackedJob
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.engines.packed.data import PackedMNIST
from mlplab.job.facts import JobFacts
from mlplab.safety.checkpoints import read_checkpoint
from mlplab.safety.resume import checkpoint_to_continue

log = logging.getLogger(__name__)


def jobs_last_checkpoints(cfgs: list[DictConfig], facts: list[JobFacts]) -> list[Path] | None:
    """Each job's last.ckpt to continue from (mlplab.safety.resume), when every job has one;
    None when none has."""
    paths = [checkpoint_to_continue(cfg, job.in_sweep) for cfg, job in zip(cfgs, facts)]
    return None if all(path is None for path in paths) else paths


def continue_together(paths: list[Path | None]) -> list[dict] | None:
    """The jobs' last.ckpt contents when all of them are at one step, so that the group
    continues as one; None when they are not (each job then continues alone)."""
    if any(path is None for path in paths):
        return None
    checkpoints = [read_checkpoint(path) for path in paths]
    steps = {checkpoint["global_step"] for checkpoint in checkpoints}
    if len(steps) > 1:
        return None
    log.info(f"continuing the group from its jobs' last.ckpt at step {steps.pop()}")
    return checkpoints


def network_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's entries of a single Classifier's state_dict, by their names in it."""
    prefix = "network."
    return {
        key.removeprefix(prefix): value
        for key, value in state_dict.items()
        if key.startswith(prefix)
    }


def stacked(values: list[torch.Tensor], index: int, module: PackedClassifier) -> torch.Tensor:
    return torch.stack([module.network.swap_layout(index, value) for value in values])


def packed_checkpoint(singles: list[dict[str, Any]], module: PackedClassifier) -> dict[str, Any]:
    """The packed trainer's checkpoint, stacked from each job's single-network one."""
    first = singles[0]
    parameters = list(module.network.stacked)
    states = [network_state(single["state_dict"]) for single in singles]
    state_dict = {
        f"network.{name}": value for name, value in module.network.stacked_state(states).items()
    }
    optimizer_states = []
    for number, state in enumerate(first["optimizer_states"]):
        per_parameter = {}
        for index, values in state["state"].items():
            single_shape = module.network.swap_layout(index, parameters[index][0]).shape
            per_parameter[index] = {
                name: stacked(
                    [s["optimizer_states"][number]["state"][index][name] for s in singles],
                    index,
                    module,
                )
                if torch.is_tensor(value) and value.shape == single_shape
                else value
                for name, value in values.items()
            }
        optimizer_states.append({"state": per_parameter, "param_groups": state["param_groups"]})
    orders = [s[MNISTDataModule.__qualname__] for s in singles]
    return {
        "epoch": first["epoch"],
        "global_step": first["global_step"],
        "pytorch-lightning_version": first["pytorch-lightning_version"],
        "state_dict": state_dict,
        "loops": with_training_loader_state(first, orders),
        "callbacks": {},
        "optimizer_states": optimizer_states,
        "lr_schedulers": first["lr_schedulers"],
        PackedMNIST.__qualname__: orders,
    }


def restore_jobs(singles: list[dict[str, Any]], module: PackedClassifier, jobs: list[PackedJob]):
    """What the packed trainer's checkpoint does not hold: each job's best checkpoint so far,
    its best weights, its dropout generator and its epoch's training sums."""
    for copy, (single, job) in enumerate(zip(singles, jobs)):
        if job.best is not None and job.best.state_key in single["callbacks"]:
            job.best.load_state_dict(single["callbacks"][job.best.state_key])
            best = Path(job.best.best_model_path) if job.best.best_model_path else None
            if best and best.exists():
                job.best_state = network_state(read_checkpoint(best)["state_dict"])
        module.network.dropout_generators[copy].set_state(single["torch_rng_state"])
    module.training_sums.load_copies([single["training_sums"] for single in singles])


def save_for_trainer(checkpoint: dict[str, Any], jobs: list[PackedJob]) -> Path:
    """Write the stacked checkpoint beside the first job's, for the trainer to read."""
    path = Path(jobs[0].cfg.checkpoint_dir) / f".packed_{results.LAST_CHECKPOINT}"
    torch.save(checkpoint, path)
    return path
