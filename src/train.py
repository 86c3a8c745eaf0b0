"""`python -m train [overrides]`: train and test one configuration (or a sweep with -m).

`python -m train resume=<run folder>` continues a stopped run from its last checkpoint.
This is Hydra's entry point: mlplab.config.hydra_runtime hands the job a resolved config and the
facts of the job; a known error becomes one line and an exit status.
"""

import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mlplab.config.command_line import check_command_line
from mlplab.errors import one_line_errors
from mlplab.record.console import silence_known_noise
from mlplab.safety.resume import resume_arguments
from mlplab.safety.run_folders import one_writer, register_unique_suffix_resolver

CONFIG_PATH, CONFIG_NAME = "../conf", "train"
register_unique_suffix_resolver()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float:
    silence_known_noise()
    # Imported here so that `--help` and config errors answer before torch is imported.
    from mlplab import results
    from mlplab.config.hydra_runtime import started_job
    from mlplab.job.run import run_job

    job = started_job(cfg)
    in_sweep = job.in_sweep
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
