"""`hydra/sweeper=optuna`: mlplab's Hydra sweeper over the current Optuna.

Each batch of `n_jobs` trials asked at once goes to the launcher as one launch, so the packed
launcher trains the trials that can share a stacked network together. Every trial reports
its monitored value after each epoch (mlplab.search.pruning) and the study's pruner may stop
it there. The study is stored by name (SQLite under outputs/ by default); the search runs
until the study holds `n_trials` trials, so the same command continues a killed search and a
larger n_trials extends a finished one. It imports Optuna only when it sweeps: Hydra imports
every plugin at start-up, `--help` included.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: DictConfig,
        pruner: DictConfig | None,
        direction: str | list[str],
        objectives: list[str],
        study_name: str,
        storage: str,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None = None,
    ) -> None:
        """`objectives`: the metrics.json keys the study optimises, each in its `direction`
        (maximize or minimize; one for all or one per objective)."""
        self.sampler = sampler
        self.pruner = pruner or None
        self.objectives = list(objectives)
        directions = [direction] if isinstance(direction, str) else list(direction)
        self.directions = directions * len(self.objectives) if len(directions) == 1 else directions
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = OmegaConf.to_container(params) if params else {}
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        from mlplab.errors import ConfigError
        from mlplab.results import SEARCH_RESULTS
        from mlplab.search.space import grid, search_space, trial_overrides
        from mlplab.search.storage import open_storage
        from mlplab.search.study import (
            OWNER,
            outcome,
            take_over_interrupted,
            tell,
            this_search,
            trials_counted,
        )

        if len(self.directions) != len(self.objectives):
            raise ConfigError(
                f"hydra.sweeper.direction={self.directions}: give one direction, or one for "
                f"each of the {len(self.objectives)} objectives {self.objectives}"
            )
        if self.pruner and len(self.objectives) > 1:
            raise ConfigError(
                "hydra.sweeper.pruner: Optuna prunes single-objective studies only; add "
                "hydra/sweeper/pruner=none to search several objectives"
            )
        space, fixed = search_space(self.params, arguments)
        grid_search = self.sampler._target_ == "optuna.samplers.GridSampler"
        sampler = instantiate(self.sampler, search_space=grid(space)) if grid_search else None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage),
            sampler=sampler or instantiate(self.sampler),
            pruner=instantiate(self.pruner) if self.pruner else optuna.pruners.NopPruner(),
            directions=self.directions,
            load_if_exists=True,
        )
        take_over_interrupted(study)
        log.info(
            f"study {self.study_name} in {self.storage}: {trials_counted(study)} of "
            f"{self.n_trials} trials so far; {self.n_jobs} at once"
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_number = 0
        while (left := self.n_trials - trials_counted(study)) > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, left))]
            for trial in trials:
                trial.set_user_attr(OWNER, this_search())
            batch = [
                [*fixed, *trial_overrides(trial.params), f"callbacks.trial.number={trial.number}"]
                for trial in trials
            ]
            returns = self.launcher.launch(batch, initial_job_idx=job_number)
            job_number += len(batch)
            for trial, job in zip(trials, returns):
                tell(study, trial, Path(job.hydra_cfg.hydra.runtime.output_dir), self.objectives)
        found = outcome(study, self.objectives)
        (sweep_dir / SEARCH_RESULTS).write_text(OmegaConf.to_yaml(found))
        log.info(f"{SEARCH_RESULTS}: {found}")
