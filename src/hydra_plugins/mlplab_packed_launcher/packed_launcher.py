"""`hydra/launcher=packed`: the jobs of a sweep that can share one stacked network train as one.

Hydra finds launchers in the hydra_plugins package; this one runs the jobs in this process,
like Hydra's basic launcher, but hands each group of packable jobs (mlplab.sweeps.packing)
to mlplab.engines.packed.train as one training. The groups are what it launches: here, one
after the other; side by side or on a cluster in the launchers beside it. Each job still
gets its folder, its .hydra/ files and its train.log from Hydra's run_job, and its result
goes back to the sweeper.
It imports mlplab's training modules only when it launches: Hydra imports every plugin at
start-up, `--help` included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class PackedLauncher(Launcher):
    """Runs the groups of a sweep here, one after the other; the launchers that subclass it run
    them side by side (ParallelPackedLauncher) or as cluster jobs (SlurmPackedLauncher)."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        # The sweeper composes each job of a batch to check it before launching the batch;
        # the launcher takes those configs instead of composing each job again.
        hydra_context.config_loader = ComposedOnce(hydra_context.config_loader)
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from mlplab.record.console import silence_known_noise

        silence_known_noise()
        from mlplab.sweeps.packing import packing_groups

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self.job_config(overrides, initial_job_idx + index)
            for index, overrides in enumerate(job_overrides)
        ]
        grouped = packing_groups(configs)
        groups = [indices for indices, _ in grouped]
        for indices, reason in grouped:
            numbers = ", ".join(f"#{initial_job_idx + index}" for index in indices)
            if len(indices) > 1:
                log.info(f"packed together: {numbers}")
            else:
                log.info(f"alone: {numbers} ({reason or 'nothing to pack it with'})")
            for index in indices:
                log.info(f"\t#{initial_job_idx + index} : {describe(job_overrides[index])}")
        run = GroupRun(self.hydra_context, self.task_function, Singleton.get_state())
        ran = self.run_groups(run, [[configs[index] for index in indices] for indices in groups])
        returns: dict[int, JobReturn] = {}
        for indices, group_returns in zip(groups, ran):
            returns.update(zip(indices, group_returns))
        return [returns[index] for index in range(len(configs))]

    def run_groups(self, run: GroupRun, groups: list[list[DictConfig]]) -> list[list[JobReturn]]:
        """Each group's job returns: here, one group after the other."""
        ran = []
        for group in groups:
            ran.append(run(group))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ran

    def job_config(self, overrides: Sequence[str], number: int) -> DictConfig:
        config = self.hydra_context.config_loader.take_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = number
            config.hydra.job.num = number
        return config


class GroupRun:
    """Runs one group of a sweep's jobs, wherever the launcher sends it (this process, a
    worker, a cluster job): a single job as Hydra runs a job of a sweep, a packed group
    trained as one. Picklable: it travels with the group."""

    def __init__(
        self, hydra_context: HydraContext, task_function: TaskFunction, singletons: dict
    ) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.singletons = singletons

    def __call__(self, configs: list[DictConfig]) -> list[JobReturn]:
        Singleton.set_state(self.singletons)
        setup_globals()
        if len(configs) == 1:
            return [self.run(configs[0])]
        return self.run_packed(configs)

    def checkpoint(self, configs: list[DictConfig]) -> Any:
        """What submitit requeues when the cluster pre-empts the group: the same group, which
        continues from its jobs' last.ckpt (mlplab.engines.packed.resume)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, configs)

    def run(self, config: DictConfig, task_function: TaskFunction | None = None) -> JobReturn:
        """Run `task_function` (the app's own by default) as Hydra runs a job of a sweep."""
        return run_job(
            hydra_context=self.hydra_context,
            task_function=task_function or self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    def run_packed(self, configs: list[DictConfig]) -> list[JobReturn]:
        """Start each job (folder, .hydra/, train.log), train them as one, finish each."""
        from mlplab.engines.packed.train import fit_and_test_packed

        jobs = [self.run(config, start_job) for config in configs]
        cfgs, facts = zip(*(job.return_value for job in jobs))
        with logging_into([Path(cfg.output_dir) for cfg in cfgs]):
            outcomes = fit_and_test_packed(list(cfgs), list(facts))
        stop = None
        for config, job, cfg, outcome in zip(configs, jobs, cfgs, outcomes):
            try:
                self.finish(config, job, cfg, outcome)
            except SystemExit as exit:  # a signal stops the sweep once every job recorded it
                stop = exit
        if stop is not None:
            raise stop
        return jobs

    def finish(self, config: DictConfig, job: JobReturn, cfg: DictConfig, outcome: Any) -> None:
        """Record the job's outcome in its metrics.json and train.log, as `python -m train`
        records a job's, and make it the job's return value. Hydra's run_job started the job
        (its folder, .hydra/ and log) already: here only its end is told to the callbacks."""
        with logging_into([Path(cfg.output_dir)]):
            try:
                job.return_value = finish_job(outcome, cfg)
            except Exception as error:  # as run_job records a job that raised
                job.return_value, job.status = error, JobStatus.FAILED
            self.hydra_context.callbacks.on_job_end(config=config, job_return=job)


class ComposedOnce:
    """A config loader that keeps each job config it composes until the job takes it.

    Everything else is the wrapped loader's.
    """

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.composed: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet: an unpickled instance, in a launcher's worker
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        config = self.loader.load_sweep_config(master_config, sweep_overrides)
        self.composed[(id(master_config), tuple(sweep_overrides))] = config
        return config

    def take_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        """The job's config as composed before, else composed now; kept no longer."""
        kept = self.composed.pop((id(master_config), tuple(sweep_overrides)), None)
        if kept is None:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        return kept


def describe(overrides: Sequence[str]) -> str:
    return " ".join(filter_overrides(overrides))


def start_job(cfg: DictConfig) -> tuple[DictConfig, Any]:
    """The job's resolved config and facts, taken while Hydra has set the job up."""
    from mlplab.config.hydra_runtime import started_job

    facts = started_job(cfg)
    return cfg, facts


def finish_job(outcome: Any, cfg: DictConfig) -> float:
    """Record the outcome of the job of `cfg` (resolved when it started) in its metrics.json;
    its val/acc, NaN for a job that failed."""
    from mlplab import results
    from mlplab.errors import one_line_errors
    from mlplab.job.outcome import record_outcome

    with one_line_errors(stop=False):
        return record_outcome(Path(cfg.output_dir), outcome)[results.VAL_ACC]
    return float("nan")  # its metrics.json says why; the others go on


@contextmanager
def logging_into(folders: list[Path]) -> Iterator[None]:
    """While a group trains, its log goes into the log file of each of its jobs' folders."""
    root = logging.getLogger()
    files = [handler for handler in root.handlers if isinstance(handler, logging.FileHandler)]
    if not files:  # job logging turned off
        yield
        return
    name, formatter = Path(files[0].baseFilename).name, files[0].formatter
    handlers = [logging.FileHandler(folder / name) for folder in folders]
    for handler in files:
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        for handler in files:
            root.addHandler(handler)
