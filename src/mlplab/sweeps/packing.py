"""Which jobs of a sweep can train as one packed network, and in which groups.

Jobs pack together when their configs are equal once the settings each copy keeps apart are
left out: the seed (initial weights, split and batch order), the init (a pre-training included:
each job's network is pre-trained as its own before the group trains), the activation (applied per
slice; PReLU and maxout pack with their own kind, activation_kind), the dropout rate, and the
learning rate where each copy's update can be scaled to its own exactly
(LR_SCALABLE_OPTIMIZERS, with a schedule that multiplies every copy's rate alike). Everything
else is shared: the architecture (batch norm included: each copy normalises with its own
statistics), the optimiser's other settings, the data, batch size, epochs and schedule.
"""

from __future__ import annotations

import json

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

# Settings each copy of a packed network has for itself (a search's trial too).
PER_COPY_KEYS = ("seed", "init", "activation", "model.dropout", "callbacks.trial.number")
PACKED_MODELS = ("mlplab.model.nets.MLP", "mlplab.model.nets.SoftmaxRegression")
PACKED_DATA = "mlplab.data.mnist.MNISTDataModule"
# Optimisers whose step moves each weight by the learning rate times an amount that does not
# depend on the learning rate (their state - momentum, moments - never holds it): a copy's
# own rate is then the group's step scaled, for SGD and Adam alike.
LR_SCALABLE_OPTIMIZERS = tuple(
    f"torch.optim.{name}"
    for name in (
        "SGD",
        "Adam",
        "AdamW",
        "Adamax",
        "NAdam",
        "RAdam",
        "RMSprop",
        "Adagrad",
        "Adadelta",
    )
)
# Optimisers whose update of each weight depends only on that weight's own gradient and state,
# so one optimiser over the stacked weights gives each slice its solo update: those above,
# and Rprop (the rate is its first step size) and ASGD (its averaging depends on the rate),
# which pack with jobs of their own rate. L-BFGS (a line search over all weights together)
# is not among them.
ELEMENT_WISE_OPTIMIZERS = (*LR_SCALABLE_OPTIMIZERS, "torch.optim.Rprop", "torch.optim.ASGD")
# Schedules that multiply the learning rate by a factor of the epoch alone (cosine: down to 0).
LR_SCALING_SCHEDULERS = (
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
)
# The callbacks and diagnostics a packed group does per job itself (mlplab/engines/packed/),
# and for each the settings it honours: the values each may take (None: any value).
MONITORED = ("val/acc", "val/loss", "train/acc", "train/loss")
HONOURED_SETTINGS = {
    "callbacks.model_checkpoint": (
        "lightning.pytorch.callbacks.ModelCheckpoint",
        {
            "dirpath": None,
            "filename": None,
            "auto_insert_metric_name": None,
            "monitor": MONITORED,
            "mode": ("max", "min"),
            "save_top_k": None,
            "save_last": (False, None),
            "enable_version_counter": None,
            "verbose": None,
        },
    ),
    "callbacks.learning_rate_monitor": (
        "lightning.pytorch.callbacks.LearningRateMonitor",
        {"logging_interval": ("epoch", "step"), "log_momentum": (False,)},
    ),
    "callbacks.progress_bar": (
        "mlplab.record.progress.progress_bar",
        {"refresh_rate": None},
    ),
    "callbacks.last_checkpoint": (
        "mlplab.safety.last_checkpoint.LastCheckpoint",
        {"folder": None, "every_n_train_steps": None},
    ),
    "callbacks.save_on_signal": ("mlplab.safety.signals.SaveOnSignal", {"folder": None}),
    "diagnostics": ("mlplab.record.diagnostics.TrainingDiagnostics", {"histograms": None}),
    "callbacks.trial": (
        "mlplab.search.pruning.ReportToTrial",
        {"storage": None, "study_name": None, "number": None, "monitor": None, "pruner": None},
    ),
}


def unhonoured_setting(cfg: DictConfig) -> str | None:
    """The first callback or diagnostics setting of `cfg` a packed group does not honour."""
    for name, node in [*cfg.callbacks.items(), ("diagnostics", cfg.get("diagnostics"))]:
        key = name if name == "diagnostics" else f"callbacks.{name}"
        if not node:
            continue
        if key not in HONOURED_SETTINGS:
            return f"{key} is not packed"
        target, honoured = HONOURED_SETTINGS[key]
        settings = OmegaConf.to_container(node, resolve=False)  # paths resolve per job, later
        if settings.pop("_target_") != target:
            return f"{key}._target_={node._target_} is not packed"
        for setting, value in settings.items():
            if setting not in honoured or honoured[setting] and value not in honoured[setting]:
                return f"{key}.{setting}={value} is not packed"
    return None


def why_not_packed(cfg: DictConfig) -> str | None:
    """Why the job of `cfg` must train alone; None when it can share a packed network."""
    if cfg.model._target_ not in PACKED_MODELS:
        return f"model {cfg.model._target_} is not an MLP"
    if "activation" in cfg.model and activation_kind(cfg.activation) is None:
        return f"activation {cfg.activation._target_} has weights that are not packed"
    if cfg.optimizer._target_ not in ELEMENT_WISE_OPTIMIZERS:
        return f"optimizer {cfg.optimizer._target_} does not update each weight on its own"
    if cfg.data._target_ != PACKED_DATA:
        return f"data {cfg.data._target_} is not packed"
    if cfg.trainer.strategy != "auto" or cfg.trainer.devices != 1:
        return "it trains on several devices"
    if cfg.compile:
        return "compile=true"
    return unhonoured_setting(cfg)


def activation_kind(activation: DictConfig) -> str | None:
    """What every copy of a packed group applies alike: "function" for any activation without
    weights that keeps the width (each copy may have its own), PReLU with the shape of its
    slopes, maxout with its pieces; None for an activation with other weights."""
    from mlplab.model.nets import Maxout

    unit = instantiate(activation)()
    if isinstance(unit, Maxout):
        return f"maxout of {unit.pieces} pieces"
    if isinstance(unit, nn.PReLU):
        return f"PReLU of {unit.num_parameters} slopes"
    return None if any(True for _ in unit.parameters()) else "function"


def lr_per_copy(cfg: DictConfig) -> bool:
    """Whether the job's learning rate can differ from the others' of its packed group."""
    scheduler = cfg.get("scheduler")
    return (
        cfg.optimizer._target_ in LR_SCALABLE_OPTIMIZERS
        and cfg.optimizer.get("lr", 0) > 0
        and (
            not scheduler
            or scheduler._target_ in LR_SCALING_SCHEDULERS
            and not scheduler.get("eta_min")
        )
    )


def shared_settings(cfg: DictConfig) -> str:
    """The job's config without Hydra's node and the per-copy keys, as text to compare.

    Unresolved, so that paths below each job's own folder compare equal.
    """
    settings = OmegaConf.to_container(cfg, resolve=False)
    settings.pop("hydra", None)
    if "activation" in cfg.model:
        settings["activation_kind"] = activation_kind(cfg.activation)
    for key in (*PER_COPY_KEYS, "optimizer.lr") if lr_per_copy(cfg) else PER_COPY_KEYS:
        *parents, name = key.split(".")
        node = settings
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(name, None)
    return json.dumps(settings, sort_keys=True, default=str)


def packing_groups(configs: list[DictConfig]) -> list[tuple[list[int], str | None]]:
    """The jobs (indices into `configs`) that train together, in the order of their first job,
    each group with the reason its job trains alone (None for a packed group)."""
    groups: dict[str, list[int]] = {}
    alone: dict[int, str] = {}
    for index, cfg in enumerate(configs):
        reason = why_not_packed(cfg)
        if reason:
            alone[index] = reason
            groups[f"alone {index}"] = [index]
        else:
            groups.setdefault(shared_settings(cfg), []).append(index)
    ordered = sorted(groups.values(), key=lambda indices: indices[0])
    return [(indices, alone.get(indices[0])) for indices in ordered]
