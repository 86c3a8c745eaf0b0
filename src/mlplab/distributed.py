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
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig

# What a launcher tells the processes it starts; cleared after each job so that the next
# job of a multirun starts processes of its own.
PROCESS_GROUP_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_command(hydra: DictConfig, local_rank: int) -> list[str]:
    """`python -m train` with this job's overrides, run as a single run in this job's folder."""
    return [
        sys.executable,
        "-m",
        "train",
        f"--config-name={hydra.job.config_name}",
        *hydra.overrides.task,
        # Quoted: a multirun job folder holds "=" and "," from its overrides.
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        # Only the first process writes .hydra/ and train.log; the others log beside it.
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",
    ]


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Starts local ranks 1.. of this node by running the current Hydra job again."""

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        hydra = HydraConfig.get()
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command = job_command(hydra, local_rank)
            self.procs.append(subprocess.Popen(command, env=env, cwd=hydra.runtime.cwd))


class HydraJobDDPStrategy(DDPStrategy):
    """Lightning's `ddp` strategy, with the processes of a node started by HydraJobLauncher.

    Where a cluster starts the processes itself (SLURM's srun, torchrun), nothing is launched
    and this is plain `ddp`.
    """

    def _configure_launcher(self) -> None:
        self._launcher = HydraJobLauncher(
            self.cluster_environment, self.num_processes, self.num_nodes
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
