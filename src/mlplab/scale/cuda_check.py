"""A cheap torch.cuda.is_available() on machines without NVIDIA's driver."""

from __future__ import annotations

import os

import torch

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_nvml_check_without_driver() -> None:
    """Let PyTorch count CUDA devices its usual way when there is no CUDA device to find.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so that asking whether CUDA is
    available does not initialise CUDA in a process that may fork later. Without NVIDIA's
    driver, each such question tries to load libnvidia-ml, fails, and falls back to CUDA's
    own (cached) count anyway; Adam asks it at every step, about 0.2 ms a step on a 2-core
    CPU. Where CUDA is available, Lightning's fork-safe check stays.
    """
    if os.environ.get(NVML_CHECK) == "1" and not torch.cuda.is_available():
        del os.environ[NVML_CHECK]
