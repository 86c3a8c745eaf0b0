"""Checks of the composed config, run before anything is built or trained.

They need only the config, so `python -m train` runs them before torch is imported; a check
that must ask torch (is there a GPU?) imports it when the config asks for one.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from collections.abc import Sequence
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from mlplab.errors import ConfigError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(valid: bool, key: str, value: Any, accepted: str) -> None:
    """Raise a one-line ConfigError naming the key, its value and what is accepted."""
    if not valid:
        raise ConfigError(f"{key}={value!r} is not valid: {accepted}")


def check_data(data: DictConfig) -> None:
    for key in ("batch_size", "eval_batch_size", "val_size"):
        value = data[key]
        require(is_whole_number(value) and value >= 1, f"data.{key}", value, "a whole number >= 1")
    for key in ("normalize", "download"):
        require(isinstance(data[key], bool), f"data.{key}", data[key], "true or false")
    require(is_number(data.mean), "data.mean", data.mean, "a number")
    require(is_number(data.std) and data.std > 0, "data.std", data.std, "a number > 0")


def check_classes(cfg: DictConfig) -> None:
    """The network has one output per class of the dataset."""
    classes, outputs = len(cfg.data.class_names), cfg.model.num_classes
    if classes != outputs:
        raise ConfigError(
            f"model.num_classes={outputs} but data.class_names lists {classes} classes: "
            f"set model.num_classes={classes}"
        )


def check_model(model: DictConfig) -> None:
    if "hidden_sizes" in model:
        sizes = model.hidden_sizes
        require(
            isinstance(sizes, ListConfig)
            and len(sizes) > 0
            and all(is_whole_number(size) and size >= 1 for size in sizes),
            "model.hidden_sizes",
            sizes,
            "a non-empty list of positive widths such as [256,256] "
            "(model=linear has no hidden layer)",
        )
    if "dropout" in model:
        dropout = model.dropout
        require(
            is_number(dropout) and 0 <= dropout < 1, "model.dropout", dropout, "a number in [0, 1)"
        )
    if "batchnorm" in model:
        require(
            isinstance(model.batchnorm, bool), "model.batchnorm", model.batchnorm, "true or false"
        )


def check_activation(activation: DictConfig) -> None:
    if "pieces" in activation:
        pieces = activation.pieces
        require(
            is_whole_number(pieces) and pieces >= 2,
            "activation.pieces",
            pieces,
            "a whole number >= 2",
        )


def check_optimizer(optimizer: DictConfig) -> None:
    if optimizer._target_ == "torch.optim.SparseAdam":
        raise ConfigError(
            "optimizer=sparse_adam cannot train an MLP: torch.optim.SparseAdam only updates sparse "
            "gradients (from nn.Embedding(sparse=True)) and every Linear layer has dense ones; "
            "use optimizer=adam (same update rule for dense gradients)"
        )
    lr = optimizer.lr
    require(is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0, such as 1e-3")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def mps_available() -> bool:
    import torch

    return torch.backends.mps.is_available()


def check_trainer(trainer: DictConfig) -> None:
    epochs = trainer.max_epochs
    require(
        is_whole_number(epochs) and epochs >= 1, "trainer.max_epochs", epochs, "a whole number >= 1"
    )
    accelerator = trainer.accelerator
    require(
        accelerator in ACCELERATORS, "trainer.accelerator", accelerator, ", ".join(ACCELERATORS)
    )
    if accelerator in ("gpu", "cuda") and not cuda_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible to PyTorch: "
            "use trainer=cpu or trainer.accelerator=auto"
        )
    if accelerator == "mps" and not mps_available():
        raise ConfigError(
            "trainer.accelerator=mps but Apple's MPS backend is not available here: "
            "use trainer=cpu or trainer.accelerator=auto"
        )


def check_pretraining(cfg: DictConfig) -> None:
    """The init group's pre-training: its settings, and a network and data it can pre-train.

    Each hidden layer is pre-trained as an RBM of binary units: its outputs must be the
    sigmoid of a Linear layer, and the images the first RBM sees must lie in [0, 1].
    """
    pretraining = cfg.init.get("pretraining")
    if not pretraining:
        return
    for key in ("k", "epochs", "batch_size"):
        value = pretraining[key]
        require(
            is_whole_number(value) and value >= 1,
            f"init.pretraining.{key}",
            value,
            "a whole number >= 1",
        )
    lr = pretraining.lr
    require(is_number(lr) and lr > 0, "init.pretraining.lr", lr, "a number > 0, such as 0.1")
    if "hidden_sizes" not in cfg.model:
        raise ConfigError(
            "init=rbm pre-trains hidden layers and this model has none: use model=mlp"
        )
    if cfg.activation._target_ != "torch.nn.Sigmoid":
        raise ConfigError(
            f"init=rbm pre-trains sigmoid units, but the activation is {cfg.activation._target_}:"
            " use activation=sigmoid"
        )
    if cfg.model.batchnorm:
        raise ConfigError(
            "init=rbm pre-trains each Linear layer with the sigmoid right after it, and "
            "model.batchnorm=true puts BatchNorm1d between them: use model.batchnorm=false"
        )
    if cfg.data.normalize:
        raise ConfigError(
            "init=rbm needs pixels in [0, 1] for the first RBM's binary units, and "
            "data.normalize=true standardises them: use data.normalize=false"
        )


def check_options_used(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse an override of a group that the chosen model does not read.

    Such a run would equal the one without the override, so a sweep over it would train
    identical jobs under different names.
    """
    model = cfg.model._target_.rsplit(".", 1)[-1]
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        group = key.split(".", 1)[0]
        if group == "activation" and "activation" not in cfg.model:
            raise ConfigError(
                f"{override} has no effect: the model ({model}) has no hidden layer and so no "
                "activation; drop it, or use model=mlp"
            )


# A tracker's package, and the extra of mlplab that installs it.
TRACKER_PACKAGES = {"MLFlowLogger": ("mlflow", "mlflow"), "WandbLogger": ("wandb", "wandb")}


def check_loggers(loggers: DictConfig | None) -> None:
    for name, tracker in (loggers or {}).items():
        kind = tracker._target_.rsplit(".", 1)[-1] if tracker else None
        package, extra = TRACKER_PACKAGES.get(kind, (None, None))
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logger={name} needs the {package} package, which is not installed: "
                f"pip install -e '.[{extra}]'"
            )


# Launchers and sweepers of mlplab's: the package each needs, and the option that picks it.
PLUGIN_PACKAGES = {
    "ParallelPackedLauncher": ("joblib", "hydra/launcher=parallel"),
    "SlurmPackedLauncher": ("submitit", "hydra/launcher=slurm"),
    "OptunaSweeper": ("optuna", "hparams_search=optuna"),
}


def check_plugins(hydra: DictConfig | None) -> None:
    """The sweep's launcher and sweeper have their packages, else the pip install that brings
    them ([scale])."""
    for plugin in (hydra.launcher, hydra.sweeper) if hydra else ():
        kind = plugin._target_.rsplit(".", 1)[-1]
        package, option = PLUGIN_PACKAGES.get(kind, (None, None))
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"{option} needs the {package} package, which is not installed: "
                "pip install -e '.[scale]'"
            )


# Keys that Hydra's instantiate reads itself.
INSTANTIATE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def accepted_arguments(target: str) -> list[str] | None:
    """The keyword arguments `target` takes; None when it takes any (**kwargs)."""
    parameters = inspect.signature(get_object(target)).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    positional_only = inspect.Parameter.POSITIONAL_ONLY
    return [parameter.name for parameter in parameters if parameter.kind is not positional_only]


def check_additions(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse a key added with `+` that nothing reads: it would change nothing, silently.

    An added key is read when its node is instantiated (it has a `_target_`) and the target
    takes an argument of that name.
    """
    for override in overrides:
        if not override.startswith("+") or override.startswith("++"):
            continue
        key = override[1:].split("=", 1)[0]
        if key.startswith("hydra."):
            continue
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else None
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target is None:
            raise ConfigError(
                f"{override}: nothing reads {key} (only the arguments of a node with a "
                "_target_ can be added); drop it, or set an existing key without the +"
            )
        if name in INSTANTIATE_KEYS:
            continue
        accepted = accepted_arguments(target)
        if accepted is not None and name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"did you mean {parent}.{close[0]}? " if close else ""
            raise ConfigError(
                f"{override}: {target} takes no argument {name}; {hint}"
                f"it takes {', '.join(accepted)}"
            )


def check_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Raise ConfigError for the first value that cannot work; `overrides` of the command line."""
    require(is_whole_number(cfg.seed), "seed", cfg.seed, "a whole number")
    check_data(cfg.data)
    check_model(cfg.model)
    check_classes(cfg)
    check_activation(cfg.activation)
    check_optimizer(cfg.optimizer)
    check_trainer(cfg.trainer)
    check_loggers(cfg.get("logger"))
    check_pretraining(cfg)
    check_options_used(cfg, overrides)
