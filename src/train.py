"""`python -m train [overrides]`: train and test one configuration (or a sweep with -m).

`python -m train resume=<run folder>` continues a stopped run from its last checkpoint.
This is the only module that reads Hydra's runtime: it hands the job a resolved config and
the facts of the job, and turns a known error into one line and an exit status.
"""

import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlplab.command_checks import check_command_line
from mlplab.console import silence_known_noise
from mlplab.errors import one_line_errors
from mlplab.safety.resume import resume_arguments, saved_choices
from mlplab.safety.run_folders import one_writer, register_unique_suffix_resolver

CONFIG_PATH, CONFIG_NAME = "../conf", "train"
register_unique_suffix_resolver()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float:
    silence_known_noise()
    # Imported here so that `--help` and config errors answer before torch is imported.
    from mlplab import results
    from mlplab.run import JobFacts, run_job
    from mlplab.scale.distributed import job_command
    from mlplab.scale.job_resources import available_cores, jobs_at_once

    # Hydra's handlers already print and file Lightning's messages; Lightning's own would
    # print each of them a second time.
    logging.getLogger("lightning").handlers.clear()
    runtime = HydraConfig.get()
    OmegaConf.resolve(cfg)  # output_dir and every path below it, from Hydra's runtime
    in_sweep = runtime.mode == RunMode.MULTIRUN
    job = JobFacts(
        number=runtime.job.get("num") or 0,
        in_sweep=in_sweep,
        jobs_at_once=jobs_at_once(runtime.launcher, available_cores()),
        overrides=tuple(runtime.overrides.task),
        command=job_command(runtime),
        # A resumed run is composed from its saved config, which names no options.
        choices=saved_choices(Path(cfg.resume)) if cfg.get("resume") else runtime.runtime.choices,
    )
    # A single run holds its folder while it writes there; a sweep's job folders are its own.
    holding = nullcontext() if in_sweep else one_writer(Path(cfg.output_dir))
    with one_line_errors(stop=not in_sweep), holding:
        return run_job(cfg, job)[results.VAL_ACC]
    return float("nan")  # a failed job of a sweep: its metrics.json says why; the others go on


if __name__ == "__main__":
    with one_line_errors():
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        check_command_line(sys.argv[1:], Path(__file__).parent, CONFIG_PATH, CONFIG_NAME)
    main()
