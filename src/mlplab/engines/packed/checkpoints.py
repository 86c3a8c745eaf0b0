"""What each job of a packed group keeps of its own: config, trackers, checkpoints.

A packed job's checkpoints are those of a single network, in the format `python -m train`
writes (its config inside, its slice of the weights, of the optimiser's state and of the
batch order), so `evaluate` tests them and `resume=` continues the job alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

import mlplab.results as results
from mlplab.data.mnist import MNISTDataModule
from mlplab.engines.lightning_internals import (
    is_among_best,
    keep_among_best,
    trainer_checkpoint,
    training_loader_state,
    with_training_loader_state,
)
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.engines.packed.network import PackedNetworks
from mlplab.safety.checkpoints import AtomicCheckpointIO
from mlplab.safety.signals import StopOnSignal


@dataclass
class PackedJob:
    """One job of a packed group: its resolved config and what is written in its folder."""

    cfg: DictConfig
    flops_per_example: int  # of one training example through its network (mlplab.model.compute)
    layer_sizes: list[int]  # its network's input size, then each Linear layer's output size
    pretrain_seconds: float = 0.0
    pretrain_flops: int = 0
    loggers: list[Logger] = field(default_factory=list)
    best: ModelCheckpoint | None = None  # the job's own callback: its file names and state
    best_state: dict[str, torch.Tensor] | None = None  # its network's at its best epoch
    # The config resolved, as each of its checkpoints holds it: once, before training, rather
    # than at each save, where it took as long as writing the file.
    hyper_parameters: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.hyper_parameters = OmegaConf.to_container(self.cfg, resolve=True)

    @property
    def folder(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def last_checkpoint(self) -> Path:
        return Path(self.cfg.checkpoint_dir) / results.LAST_CHECKPOINT


def copy_of_optimizer_state(
    state: dict[str, Any], copy: int, network: PackedNetworks, lr_scale: float
) -> dict[str, Any]:
    """Slice `copy` of each per-element tensor of the optimiser's state (Adam's moments,
    SGD's momentum) in a single network's layout, at the copy's own learning rate; shared
    values such as Adam's step count stay as they are."""
    stacked, row = list(network.stacked), network.row(copy)

    def sliced(value: Any, index: int) -> Any:
        if torch.is_tensor(value) and value.shape == stacked[index].shape:
            return network.swap_layout(index, value[row]).clone(
                memory_format=torch.contiguous_format
            )
        return value

    per_parameter = {
        index: {name: sliced(value, index) for name, value in values.items()}
        for index, values in state["state"].items()
    }
    groups = [scaled(group, lr_scale, ("lr", "initial_lr")) for group in state["param_groups"]]
    return {"state": per_parameter, "param_groups": groups}


def scaled(state: dict[str, Any], factor: float, keys: tuple[str, ...]) -> dict[str, Any]:
    """`state` with the learning rates under `keys` (numbers or lists) times `factor`."""
    times = {
        key: [value * factor for value in state[key]]
        if isinstance(state[key], list)
        else state[key] * factor
        for key in keys
        if key in state
    }
    return {**state, **times}


def validation(module: PackedClassifier, copy: int) -> dict[str, float]:
    """Copy `copy`'s val/acc and val/loss of the epoch's validation, as a single run records."""
    means = module.epoch_results.get("val", {})
    return {results.metric_key("val", name): float(means[name][copy]) for name in means}


def single_checkpoint(
    packed: dict[str, Any], module: PackedClassifier, copy: int, job: PackedJob
) -> dict[str, Any]:
    """The checkpoint job `copy` would have written alone, from the packed trainer's one."""
    network = module.network
    loader_state = training_loader_state(packed)[copy]
    generator = network.dropout_generators[copy]
    shared = ("epoch", "global_step", "pytorch-lightning_version")
    lr_scale = module.lr_scales[copy] if module.lr_scales else 1.0
    schedulers = [
        scaled(state, lr_scale, ("base_lrs", "_last_lr")) for state in packed["lr_schedulers"]
    ]
    return {
        **{key: packed[key] for key in shared if key in packed},
        **({"lr_schedulers": schedulers} if "lr_schedulers" in packed else {}),
        "state_dict": {
            f"network.{name}": value.detach().clone(memory_format=torch.contiguous_format)
            for name, value in network.copy_state(copy).items()
        },
        "loops": with_training_loader_state(packed, loader_state),
        "callbacks": {job.best.state_key: job.best.state_dict()} if job.best else {},
        "optimizer_states": [
            copy_of_optimizer_state(state, copy, network, lr_scale)
            for state in packed["optimizer_states"]
        ],
        "hparams_name": "hparams",
        "hyper_parameters": job.hyper_parameters,
        MNISTDataModule.__qualname__: loader_state,
        "training_sums": module.training_sums.copy_state(copy),
        results.VALIDATION: validation(module, copy),
        # Dropout's masks: a resumed job draws from where its copy stopped (CPU generators).
        "torch_rng_state": generator.get_state()
        if generator.device.type == "cpu"
        else torch.get_rng_state(),
    }


class PackedCheckpoints(Checkpoint):
    """Each job's best checkpoints (its model_checkpoint callback's save_top_k files) and its
    last.ckpt.

    last.ckpt every `every_n_train_steps` steps and at each epoch's end, as LastCheckpoint
    writes it; a Checkpoint, so Lightning calls it after the module's epoch-end hook, where
    single runs save theirs. A diverged job's files stay as they were when it diverged.
    """

    def __init__(self, jobs: list[PackedJob], every_n_train_steps: int | None) -> None:
        self.jobs = jobs
        self.every_n_train_steps = every_n_train_steps
        self.io = AtomicCheckpointIO()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: PackedClassifier, *args) -> None:
        every = self.every_n_train_steps
        if every and trainer.global_step % every == 0:
            self.save_last(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: PackedClassifier) -> None:
        kept = {}  # copy: its score, for each job whose checkpoint joins its best save_top_k
        for copy in pl_module.active():
            best = self.jobs[copy].best
            score = None if best is None else monitored_value(pl_module, best.monitor, copy)
            if score is not None and is_among_best(best, score):
                kept[copy] = score
        if kept:
            self.save_best(trainer, pl_module, kept)
        if self.every_n_train_steps is not None:
            self.save_last(trainer, pl_module)

    def save_best(
        self, trainer: L.Trainer, module: PackedClassifier, kept: dict[int, torch.Tensor]
    ) -> None:
        """Each job's new checkpoint among its best, and the files it pushes out removed."""
        packed = trainer_checkpoint(trainer)
        saves, pushed_out = [], []
        for copy, score in kept.items():
            job = self.jobs[copy]
            best = job.best
            candidates = {
                "epoch": torch.tensor(trainer.current_epoch),
                "step": torch.tensor(trainer.global_step),
                **copy_results(pl_module=module, copy=copy),
            }
            path = best.format_checkpoint_name(candidates)
            pushed_out.append(keep_among_best(best, path, score))
            if best.best_model_path == path:
                state = module.network.copy_state(copy).items()
                job.best_state = {name: value.detach().clone() for name, value in state}
            saves.append((single_checkpoint(packed, module, copy, job), Path(path)))
        self.io.save_checkpoints(saves)
        for path in pushed_out:
            if path:
                Path(path).unlink(missing_ok=True)

    def save_last(self, trainer: L.Trainer, module: PackedClassifier) -> None:
        """Each active job's last.ckpt."""
        packed = trainer_checkpoint(trainer)
        saves = []
        for copy in module.active():
            job = self.jobs[copy]
            saves.append((single_checkpoint(packed, module, copy, job), job.last_checkpoint))
        self.io.save_checkpoints(saves)


class SaveEveryJobOnSignal(StopOnSignal):
    """StopOnSignal for a packed group: saves the last.ckpt of each job still training."""

    def __init__(self, checkpoints: PackedCheckpoints) -> None:
        super().__init__()
        self.checkpoints = checkpoints

    def save(self, trainer: L.Trainer, pl_module: PackedClassifier) -> str:
        self.checkpoints.save_last(trainer, pl_module)
        saved = [str(self.checkpoints.jobs[copy].last_checkpoint) for copy in pl_module.active()]
        return ", ".join(saved)


def copy_results(pl_module: PackedClassifier, copy: int) -> dict[str, torch.Tensor]:
    """Copy `copy`'s values measured this epoch, by key (val/acc, train/loss, ...)."""
    return {
        results.metric_key(stage, name): values[copy].detach().cpu()
        for stage, means in pl_module.epoch_results.items()
        for name, values in means.items()
    }


def monitored_value(module: PackedClassifier, key: str, copy: int) -> torch.Tensor | None:
    """Copy `copy`'s value of `key` (such as val/acc) this epoch, if it was measured."""
    return copy_results(module, copy).get(key)
