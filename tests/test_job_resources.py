"""Parallel jobs on one machine share its cores evenly and take different GPUs."""

import platform
import resource
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from mlplab.engines.packed.train import fit_and_test_packed
from mlplab.job.facts import JobFacts
from mlplab.scale.job_resources import gpu_for_job, jobs_at_once, share_machine, threads_per_job
from mlplab.sweeps.packing import packing_groups
from tests.conftest import train


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 1),
        ({"n_jobs": 4}, 4),
        ({"n_jobs": -1}, 16),
    ],
)
def test_jobs_at_once_is_joblibs_n_jobs_with_minus_one_meaning_one_per_core(launcher, expected):
    assert jobs_at_once(OmegaConf.create(launcher), cores=16) == expected


def test_parallel_jobs_split_the_cores_and_never_get_less_than_one_thread():
    assert threads_per_job(cores=16, jobs=4) == 4
    assert threads_per_job(cores=16, jobs=3) == 5
    assert threads_per_job(cores=2, jobs=8) == 1


def test_jobs_started_together_get_different_gpus_and_later_jobs_take_them_in_turn():
    assert [gpu_for_job(num, gpu_count=4) for num in range(4)] == [0, 1, 2, 3]
    assert [gpu_for_job(num, gpu_count=4) for num in range(4, 8)] == [0, 1, 2, 3]


def test_parallel_job_on_a_multi_gpu_machine_gets_its_gpu_and_its_thread_share(
    small_run_config, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    threads = torch.get_num_threads()
    try:
        cfg = small_run_config("trainer.accelerator=gpu")
        share_machine(cfg, job_number=6, jobs=4)
        assert list(cfg.trainer.devices) == [2]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def test_a_job_run_alone_keeps_its_devices_and_threads(small_run_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    threads = torch.get_num_threads()
    cfg = small_run_config("trainer.accelerator=gpu")
    share_machine(cfg, job_number=0, jobs=1)
    assert cfg.trainer.devices == 1 and torch.get_num_threads() == threads


def test_cpu_jobs_are_given_no_gpu(small_run_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    threads = torch.get_num_threads()
    try:
        cfg = small_run_config()  # trainer=cpu
        share_machine(cfg, job_number=0, jobs=2)
        assert cfg.trainer.devices == 1
    finally:
        torch.set_num_threads(threads)


def denormals_survive() -> bool:
    """Whether this process computes with float32 numbers below 1.2e-38 rather than as 0."""
    return bool(torch.tensor([1e-40]).mul(1.0).item() != 0)


@pytest.mark.parametrize("flush", [True, False])
def test_a_job_and_a_packed_group_compute_denormals_as_flush_denormal_says(small_run_config, flush):
    flushed_before = not denormals_survive()
    try:
        torch.set_flush_denormal(not flush)
        train(small_run_config(f"flush_denormal={flush}"))
        assert denormals_survive() is not flush
        torch.set_flush_denormal(not flush)
        cfgs = [
            small_run_config(f"flush_denormal={flush}", f"seed={s}", name=f"{s}") for s in (1, 2)
        ]
        for outcome in fit_and_test_packed(cfgs, [JobFacts() for _ in cfgs]):
            outcome()
        assert denormals_survive() is not flush
    finally:
        torch.set_flush_denormal(flushed_before)


def test_jobs_that_compute_denormals_differently_do_not_pack(small_run_config):
    cfgs = [small_run_config(f"flush_denormal={flush}") for flush in (True, False)]
    assert [indices for indices, _ in packing_groups(cfgs)] == [[0], [1]]


PAGE_FAULTS_OF_A_STEP = """
import ctypes, resource, sys, torch
from mlplab.scale.job_resources import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, reuse_freed_memory
# glibc's starting thresholds (128 KiB), held there: left alone, glibc raises them as blocks
# are freed, sooner in one process than in another.
for parameter in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD):
    assert ctypes.CDLL(None).mallopt(parameter, 128 * 1024)
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # three 12 MiB tensors at once, freed at its end
    tensors = [torch.ones(3 * 2**20) for _ in range(3)]
    del tensors
for _ in range(3):  # the steps before
    step()
before = faults()
step()
print(faults() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_memory_a_step_frees_serves_the_next_without_faulting_in_fresh_pages():
    def faults(mode: str) -> int:
        command = [sys.executable, "-c", PAGE_FAULTS_OF_A_STEP, mode]
        return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)

    pages = 3 * 3 * 2**20 * 4 // resource.getpagesize()
    assert faults("held") > pages / 2  # each block mapped fresh from the kernel, faulted in
    assert faults("reuse") < pages / 20
