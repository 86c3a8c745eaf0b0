"""DDP inside Hydra jobs: the other processes run this one job, in its folder, then end."""

import os
import sys

import torch.distributed
from omegaconf import OmegaConf

from mlplab.distributed import (
    PROCESS_GROUP_VARIABLES,
    HydraJobDDPStrategy,
    HydraJobLauncher,
    job_command,
    process_group_per_job,
)


def multirun_job(output_dir: str) -> OmegaConf:
    """The hydra node of job 1 of `python -m train -m activation=relu,tanh optimizer=sgd`."""
    return OmegaConf.create(
        {
            "job": {"config_name": "train", "name": "train"},
            "overrides": {"task": ["activation=tanh", "optimizer=sgd"]},
            "runtime": {"output_dir": output_dir},
        }
    )


def test_other_processes_run_this_job_alone_in_its_folder_not_the_sweep():
    folder = "/sweeps/2026-01-01_00-00-00/1_activation=tanh,optimizer=sgd"
    command = job_command(multirun_job(folder), local_rank=1)
    assert command[:3] == [sys.executable, "-m", "train"]
    assert "-m" not in command[3:] and "--multirun" not in command
    assert "activation=tanh" in command and "optimizer=sgd" in command
    assert f'hydra.run.dir="{folder}"' in command
    assert "hydra.output_subdir=null" in command
    assert "hydra.job.name=train_rank1" in command


def test_ddp_trainer_option_uses_the_hydra_job_launcher(small_run_config):
    from hydra.utils import instantiate

    cfg = small_run_config("trainer=ddp_cpu")
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy, HydraJobDDPStrategy)
    assert isinstance(trainer.strategy.launcher, HydraJobLauncher)
    assert trainer.num_devices == 2


def test_after_a_job_its_process_group_and_launcher_variables_are_gone(
    small_run_config, monkeypatch
):
    from hydra.utils import instantiate

    trainer = instantiate(small_run_config("trainer=cpu").trainer, logger=False)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # set by the user: kept
    for name in PROCESS_GROUP_VARIABLES[1:]:
        monkeypatch.delenv(name, raising=False)
    store = torch.distributed.HashStore()
    with process_group_per_job(trainer):
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29500", LOCAL_RANK="0")
    assert not torch.distributed.is_initialized()
    assert os.environ["MASTER_ADDR"] == "10.0.0.1"
    assert "MASTER_PORT" not in os.environ and "LOCAL_RANK" not in os.environ
