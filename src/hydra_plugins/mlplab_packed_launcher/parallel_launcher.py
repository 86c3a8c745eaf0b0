"""`hydra/launcher=parallel`: a sweep's groups (mlplab.sweeps.packing) side by side on this
machine, each in a worker process of joblib's, with cores / n_jobs threads."""

from __future__ import annotations

from hydra.core.utils import JobReturn
from omegaconf import DictConfig

from hydra_plugins.mlplab_packed_launcher.packed_launcher import GroupRun, PackedLauncher


class ParallelPackedLauncher(PackedLauncher):
    def __init__(self, n_jobs: int = 2) -> None:
        """`n_jobs`: groups at once (-1: one per core); mlplab.scale.job_resources splits the
        cores and GPUs among them."""
        super().__init__()
        self.n_jobs = n_jobs

    def run_groups(self, run: GroupRun, groups: list[list[DictConfig]]) -> list[list[JobReturn]]:
        from joblib import Parallel, delayed

        # loky: fresh worker processes (Hydra's global state does not survive threads).
        return Parallel(n_jobs=self.n_jobs, backend="loky")(delayed(run)(group) for group in groups)
