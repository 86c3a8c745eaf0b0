"""`python -m train [overrides]`: train and test one configuration (or a sweep with -m).

`python -m train resume=<run folder>` continues a stopped run from its last checkpoint.
"""

import sys

import hydra
from omegaconf import DictConfig

from mlplab.errors import ConfigError
from mlplab.resume import resume_arguments
from mlplab.run_folders import register_unique_suffix_resolver

register_unique_suffix_resolver()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from mlplab.run import train  # imported here so `--help` and config errors answer fast

    return train(cfg)


if __name__ == "__main__":
    try:
        sys.argv[1:] = resume_arguments(sys.argv[1:])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    main()
