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
    cfgs: list[DictConfig],
    networks: list[nn.Module],
    training_features: torch.Tensor,
    loggers: list[Sequence[Logger]],
    device: torch.device,
) -> float:
    """Pre-train the networks of jobs with one pre-training setting (`cfgs`; one job alone, or
    several of a packed group), each on its slice of `training_features` (K, N, in) as its
    init group asks, together, on `device`; return the seconds.

    Lightning moves the networks to their device later; the pre-training writes the weights
    into them wherever they are.
    """
    started = time.perf_counter()
    pretraining = instantiate(cfgs[0].init.pretraining)
    seeds = [cfg.seed for cfg in cfgs]
    pretraining(networks, training_features.to(device), loggers, seeds)
    seconds = time.perf_counter() - started
    together = f", {len(networks)} networks together" if len(networks) > 1 else ""
    log.info(f"pre-trained the hidden layers in {seconds:.1f} s{together}")
    return seconds


def pretraining_flops(cfg: DictConfig, network: nn.Module, training_examples: int) -> int:
    """Floating-point operations of the pre-training (0 without one)."""
    pretraining = cfg.init.get("pretraining")
    return instantiate(pretraining).flops(network, training_examples) if pretraining else 0
