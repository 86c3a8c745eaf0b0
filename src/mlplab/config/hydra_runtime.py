"""A job as Hydra starts it: its config resolved against Hydra's runtime, and its facts.

Read by the Hydra entry point and by the packed launcher, which starts jobs itself; the rest
of mlplab takes the plain config and JobFacts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlplab.job.facts import JobFacts
from mlplab.safety.resume import saved_choices
from mlplab.scale.distributed import job_command
from mlplab.scale.job_resources import available_cores, jobs_at_once


def started_job(cfg: DictConfig) -> JobFacts:
    """Resolve `cfg` in place (output_dir and every path below it) and return the job's facts."""
    # Hydra's handlers already print and file Lightning's messages; Lightning's own would
    # print each of them a second time.
    logging.getLogger("lightning").handlers.clear()
    runtime = HydraConfig.get()
    OmegaConf.resolve(cfg)
    return JobFacts(
        number=runtime.job.get("num") or 0,
        in_sweep=runtime.mode == RunMode.MULTIRUN,
        jobs_at_once=jobs_at_once(runtime.launcher, available_cores()),
        overrides=tuple(runtime.overrides.task),
        command=job_command(runtime),
        # A resumed run is composed from its saved config, which names no options.
        choices=saved_choices(Path(cfg.resume)) if cfg.get("resume") else runtime.runtime.choices,
    )
