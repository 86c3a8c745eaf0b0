"""DDP inside Hydra jobs: the other processes run this one job, in its folder, then end."""

import os
import sys

import pytest
import torch.distributed
from omegaconf import OmegaConf

from mlplab.job.build import build_trainer
from mlplab.scale.distributed import (
    PROCESS_GROUP_VARIABLES,
    HydraJobDDPStrategy,
    HydraJobLauncher,
    job_command,
    process_group_per_job,
    rank_command,
)


def multirun_job(output_dir: str, config_path: str = "/repo/conf") -> OmegaConf:
    """The hydra node of job 1 of `python -m train -m activation=relu,tanh optimizer=sgd`."""
    return OmegaConf.create(
        {
            "job": {"config_name": "train", "name": "train"},
            "overrides": {"task": ["activation=tanh", "optimizer=sgd"]},
            "runtime": {
                "output_dir": output_dir,
                "config_sources": [
                    {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
                    {"path": config_path, "schema": "file", "provider": "main"},
                ],
            },
        }
    )


def test_other_processes_run_this_job_alone_in_its_folder_not_the_sweep():
    folder = "/sweeps/2026-01-01_00-00-00/1_activation=tanh,optimizer=sgd"
    command = rank_command(job_command(multirun_job(folder)), local_rank=1)
    assert command[:3] == [sys.executable, "-m", "train"]
    assert "-m" not in command[3:] and "--multirun" not in command
    assert "activation=tanh" in command and "optimizer=sgd" in command
    assert f'hydra.run.dir="{folder}"' in command
    assert "hydra.output_subdir=null" in command
    assert command[-1] == "hydra.job.name=rank1"


def test_other_processes_find_the_primary_config_of_a_resumed_run_in_its_folder():
    run = "/outputs/runs/2026-01-01_00-00-00_1-abcd"
    command = job_command(multirun_job(run, config_path=f"{run}/.hydra"))
    assert f"--config-path={run}/.hydra" in command


def test_ddp_trainer_option_uses_the_hydra_job_launcher_with_the_jobs_command(small_run_config):
    command = [sys.executable, "-m", "train", "trainer=ddp_cpu"]
    trainer = build_trainer(small_run_config("trainer=ddp_cpu"), job_command=command)
    assert isinstance(trainer.strategy, HydraJobDDPStrategy)
    assert isinstance(trainer.strategy.launcher, HydraJobLauncher)
    assert trainer.strategy.launcher.job_command == command
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


def test_the_private_lightning_api_that_ddp_inside_hydra_jobs_overrides_is_still_there():
    """pyproject.toml bounds Lightning's version because of this seam; after an upgrade that
    fails here, review mlplab/scale/distributed.py against the new Lightning."""
    import inspect

    import lightning
    from lightning.pytorch.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.strategies.launchers.subprocess_script import (
        _SubprocessScriptLauncher,
    )

    seam = [
        (_SubprocessScriptLauncher, "_call_children_scripts"),
        (_SubprocessScriptLauncher, "_check_can_spawn_children"),
        (DDPStrategy, "_configure_launcher"),
    ]
    moved = [
        f"{cls.__name__}.{name}" for cls, name in seam if not callable(getattr(cls, name, None))
    ]
    assert not moved, f"Lightning {lightning.__version__} no longer has {moved}"
    parameters = list(inspect.signature(_SubprocessScriptLauncher.__init__).parameters)
    assert parameters[1:4] == ["cluster_environment", "num_processes", "num_nodes"], (
        f"Lightning {lightning.__version__} changed _SubprocessScriptLauncher's arguments"
    )
    launcher = HydraJobLauncher(LightningEnvironment(), 2, 1, job_command=["train"])
    assert launcher.procs == [] and launcher.num_processes == 2


def test_ddp_strategy_without_the_jobs_command_is_refused_in_one_line():
    from mlplab.errors import ConfigError

    with pytest.raises(ConfigError, match="needs the job's command: train through"):
        HydraJobDDPStrategy()._configure_launcher()
