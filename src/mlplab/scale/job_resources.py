"""What a job's process takes of the machine: its share of the cores and GPUs when the launcher
runs several jobs side by side, how the CPU treats denormal floats, how its memory is reused."""

from __future__ import annotations

import ctypes
import os
import platform

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


# glibc's mallopt parameters (malloc.h) and the largest block it lets the heap serve (64-bit).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGEST_HEAP_BLOCK = 32 * 2**20
KEPT_FREE_MEMORY = 2**30


def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep the memory this process frees, for the next tensors of its size.

    Each training step allocates and frees the same tensors (a packed batch of 8 copies: a few
    megabytes each). By default glibc maps blocks that large fresh from the kernel and returns
    them, or the free top of its heap, when freed, so the next step faults them in again page by
    page; here they are served from the heap, and up to KEPT_FREE_MEMORY of freed memory stays
    with the process rather than going back to the system. Whether the C library is glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEPT_FREE_MEMORY)
    )


def available_cores() -> int:
    return len(os.sched_getaffinity(0))
