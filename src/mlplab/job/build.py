"""Config -> objects: the network and its init, the classifier, callbacks, the trainer.

Running, evaluating and benchmarking all build through these functions; none of them runs
anything.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mlplab.engines.single.classifier import Classifier
from mlplab.model.nets import init_linear_weights
from mlplab.record.trackers import build_loggers
from mlplab.safety.checkpoints import AtomicCheckpointIO
from mlplab.scale.distributed import HydraJobDDPStrategy


def build_network(cfg: DictConfig) -> nn.Module:
    """The model group's network with the init group's weights, compiled if asked."""
    network = instantiate(cfg.model)
    init_linear_weights(network, instantiate(cfg.init.weight))
    if cfg.compile:
        network.compile()  # in place: parameter names, and so checkpoints, stay the same
    return network


def build_classifier(cfg: DictConfig) -> Classifier:
    """The network inside the LightningModule with its optimiser and scheduler."""
    return Classifier(
        build_network(cfg),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        num_classes=cfg.model.num_classes,
        hparams=OmegaConf.to_container(cfg, resolve=True),
    )


def load_classifier(cfg: DictConfig, checkpoint: dict[str, Any]) -> Classifier:
    """The classifier `cfg` describes, with the weights of `checkpoint` (as read_checkpoint
    returns it)."""
    classifier = build_classifier(cfg)
    classifier.load_state_dict(checkpoint["state_dict"])
    return classifier


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    if cfg.diagnostics:
        callbacks.append(instantiate(cfg.diagnostics))
    return callbacks


def build_strategy(strategy: DictConfig | str, job_command: list[str] | None):
    """The trainer's strategy; mlplab's DDP strategy learns the command that re-runs this job."""
    if not isinstance(strategy, DictConfig):
        return strategy
    if issubclass(get_class(strategy._target_), HydraJobDDPStrategy):
        return instantiate(strategy, job_command=job_command)
    return instantiate(strategy)


def build_trainer(
    cfg: DictConfig, resumed_step: int | None = None, job_command: list[str] | None = None
) -> L.Trainer:
    """The Trainer of a run; `resumed_step` for a resumed run, `job_command` for DDP children."""
    return instantiate(
        cfg.trainer,
        strategy=build_strategy(cfg.trainer.strategy, job_command),
        logger=build_loggers(cfg, resumed_step),
        callbacks=build_callbacks(cfg),
        plugins=[AtomicCheckpointIO()],
    )
