"""Checks of the composed config, run once before anything is built or trained."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

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


def check_trainer(trainer: DictConfig) -> None:
    epochs = trainer.max_epochs
    require(
        is_whole_number(epochs) and epochs >= 1, "trainer.max_epochs", epochs, "a whole number >= 1"
    )
    accelerator = trainer.accelerator
    require(
        accelerator in ACCELERATORS, "trainer.accelerator", accelerator, ", ".join(ACCELERATORS)
    )
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible to PyTorch: "
            "use trainer=cpu or trainer.accelerator=auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
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


def check_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Raise ConfigError for the first value that cannot work; `overrides` of the command line."""
    require(is_whole_number(cfg.seed), "seed", cfg.seed, "a whole number")
    check_data(cfg.data)
    check_model(cfg.model)
    check_activation(cfg.activation)
    check_optimizer(cfg.optimizer)
    check_trainer(cfg.trainer)
    check_pretraining(cfg)
    check_options_used(cfg, overrides)
