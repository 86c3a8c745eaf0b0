"""The init group's pre-training (init=rbm), as either engine runs it before training."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig
from torch import nn

log = logging.getLogger(__name__)


def pretrain(
    cfg: DictConfig,
    network: nn.Module,
    training_features: torch.Tensor,
    loggers: Sequence[Logger],
    device: torch.device,
) -> float:
    """Pre-train the network as the init group asks, on `device`; return the seconds.

    Lightning moves the network to its device later; the pre-training writes the weights into
    it wherever it is.
    """
    started = time.perf_counter()
    instantiate(cfg.init.pretraining)(network, training_features.to(device), loggers, seed=cfg.seed)
    seconds = time.perf_counter() - started
    log.info(f"pre-trained the hidden layers in {seconds:.1f} s")
    return seconds


def pretraining_flops(cfg: DictConfig, network: nn.Module, training_examples: int) -> int:
    """Floating-point operations of the pre-training (0 without one)."""
    pretraining = cfg.init.get("pretraining")
    return instantiate(pretraining).flops(network, training_examples) if pretraining else 0
