"""CPU threads and GPU of a job when the launcher runs several jobs side by side on one machine."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def jobs_at_once(launcher: DictConfig, cores: int) -> int:
    """How many jobs the launcher runs at the same time here: joblib's n_jobs (-1: one per core)."""
    n_jobs = launcher.get("n_jobs", 1)
    return cores if n_jobs == -1 else max(1, n_jobs)


def threads_per_job(cores: int, jobs: int) -> int:
    """An equal share of the cores, so that parallel jobs do not slow each other down."""
    return max(1, cores // jobs)


def gpu_for_job(job_num: int, gpu_count: int) -> int:
    """Jobs take the GPUs in turn; with n_jobs <= GPUs the jobs started together never share one."""
    return job_num % gpu_count


def share_machine(cfg: DictConfig, job_number: int, jobs: int) -> None:
    """Give this job its share of the cores and, with several GPUs, a GPU of its own.

    `jobs` run side by side on this machine; `job_number` is this one's number in the sweep.
    The GPU is chosen with trainer.devices=[index] rather than CUDA_VISIBLE_DEVICES: joblib
    reuses its worker processes, and CUDA reads that variable only once per process.
    """
    if jobs == 1:
        return
    torch.set_num_threads(threads_per_job(available_cores(), jobs))
    gpu_count = torch.cuda.device_count()
    if cfg.trainer.accelerator in GPU_ACCELERATORS and cfg.trainer.devices == 1 and gpu_count > 1:
        cfg.trainer.devices = [gpu_for_job(job_number, gpu_count)]


def flush_denormals(cfg: DictConfig) -> None:
    """Compute this process's denormal floats (below 1.2e-38 in float32) as 0 on the CPU, or
    exactly, as `flush_denormal` says; every job sets it, as a process may run several. A run
    saved before the setting existed resumes as it trained: exactly."""
    torch.set_flush_denormal(cfg.get("flush_denormal", False))


def available_cores() -> int:
    return len(os.sched_getaffinity(0))
