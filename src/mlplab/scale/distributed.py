"""DDP inside Hydra jobs: each job starts its own processes, in its own folder, and ends them.

Lightning's DDP launcher starts the other processes of a node by running the command line
again. Inside a Hydra multirun that command is the whole sweep, so every process would run
every job (and resolve a time-stamped sweep folder of its own). Here the other processes
run this one job instead: its overrides, in its output folder, as a single run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch.distributed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig

from mlplab.errors import ConfigError

# What a launcher tells the processes it starts; cleared after each job so that the next
# job of a multirun starts processes of its own.
PROCESS_GROUP_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_command(hydra: DictConfig) -> list[str]:
    """`python -m train` that runs this job again as a single run in this job's folder.

    `hydra` is the job's Hydra config; the command names the job's primary config by its
    folder too, so a resumed run (whose config is the run folder's saved one) is found again.
    """
    primary = next(source for source in hydra.runtime.config_sources if source.provider == "main")
    config_path = [f"--config-path={primary.path}"] if primary.schema == "file" else []
    return [
        sys.executable,
        "-m",
        "train",
        *config_path,
        f"--config-name={hydra.job.config_name}",
        *hydra.overrides.task,
        # Quoted: a multirun job folder holds "=" and "," from its overrides.
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        # Only the first process writes .hydra/ and train.log; the others log beside it.
        "hydra.output_subdir=null",
    ]


def rank_command(job_command: list[str], local_rank: int) -> list[str]:
    """`job_command` for the process of `local_rank`, which logs to rank<k>.log."""
    return [*job_command, f"hydra.job.name=rank{local_rank}"]


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Starts local ranks 1.. of this node by running `job_command`, the current Hydra job."""

    def __init__(self, *args, job_command: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_command = job_command

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command = rank_command(self.job_command, local_rank)
            self.procs.append(subprocess.Popen(command, env=env))


class HydraJobDDPStrategy(DDPStrategy):
    """Lightning's `ddp` strategy, with the processes of a node started by HydraJobLauncher.

    `job_command` re-runs the current job (see `job_command()`). Where a cluster starts the
    processes itself (SLURM's srun, torchrun), nothing is launched and this is plain `ddp`.
    """

    def __init__(self, *args, job_command: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_command = job_command

    def _configure_launcher(self) -> None:
        if self.job_command is None:
            raise ConfigError(
                "trainer.strategy=HydraJobDDPStrategy starts its processes by running the job "
                "again and needs the job's command: train through `python -m train`"
            )
        self._launcher = HydraJobLauncher(
            self.cluster_environment,
            self.num_processes,
            self.num_nodes,
            job_command=self.job_command,
        )


def started_processes(trainer: L.Trainer) -> list[subprocess.Popen]:
    """The processes this one started for the trainer (none where a cluster starts them)."""
    return getattr(trainer.strategy.launcher, "procs", [])


@contextmanager
def process_group_per_job(trainer: L.Trainer) -> Iterator[None]:
    """Run one job's fit and test; then end its process group and the processes it started.

    Lightning keeps the group and the launcher's variables for the life of the process,
    which would make the next job of a multirun talk to processes that have exited.
    """
    saved = {name: os.environ.get(name) for name in PROCESS_GROUP_VARIABLES}
    try:
        yield
    except BaseException:
        for process in started_processes(trainer):
            process.kill()  # they may be waiting in a collective that will never complete
        raise
    else:
        for process in started_processes(trainer):
            process.wait()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
