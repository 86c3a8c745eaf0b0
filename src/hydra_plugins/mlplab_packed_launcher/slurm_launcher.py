"""`hydra/launcher=slurm`: each group of a sweep (mlplab.sweeps.packing) is one SLURM job,
submitted with submitit (cluster=local runs them as local processes, the same way).

A pre-empted or timed-out group saves each job's last.ckpt (mlplab.safety.signals), submitit
requeues it (GroupRun.checkpoint), and the requeued group continues from those checkpoints.
"""

from __future__ import annotations

from typing import Any

from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mlplab_packed_launcher.packed_launcher import GroupRun, PackedLauncher

# submitit's parameters for every cluster; the others are SLURM's (slurm_<name> to submitit).
SHARED_PARAMETERS = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb")
SHARED_PARAMETERS += ("nodes", "name", "stderr_to_stdout")


class SlurmPackedLauncher(PackedLauncher):
    def __init__(
        self, submitit_folder: str, cluster: str, max_num_timeout: int, **parameters: Any
    ) -> None:
        """`cluster`: slurm, or local to run each group as a local process; `parameters`:
        the job's resources (conf/hydra/launcher/slurm.yaml)."""
        super().__init__()
        self.submitit_folder = submitit_folder
        self.cluster = cluster
        self.max_num_timeout = max_num_timeout
        self.parameters = {
            name if name in SHARED_PARAMETERS else f"slurm_{name}": value
            for name, value in OmegaConf.to_container(OmegaConf.create(parameters)).items()
        }

    def run_groups(self, run: GroupRun, groups: list[list[DictConfig]]) -> list[list[JobReturn]]:
        import submitit

        executor = submitit.AutoExecutor(
            folder=self.submitit_folder,
            cluster=self.cluster,
            slurm_max_num_timeout=self.max_num_timeout,
        )
        executor.update_parameters(**self.parameters)
        jobs = executor.map_array(run, groups)
        return [job.results()[0] for job in jobs]
