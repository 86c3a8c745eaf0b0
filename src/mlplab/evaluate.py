"""`python -m mlplab.evaluate ckpt_path=<file.ckpt or run folder>`: test a saved checkpoint on
its dataset's test set."""

import sys

import hydra
from omegaconf import DictConfig

from mlplab.config.paths import paths_as_given

# Taken as they are: a sweep job's folder (0_seed=1,trainer.max_epochs=1) needs no quoting.
PATH_KEYS = ("ckpt_path", "data_root")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mlplab.record.console import silence_known_noise
    from mlplab.use.checkpoint_test import evaluate  # imported here so `--help` answers fast

    silence_known_noise()
    evaluate(cfg)


if __name__ == "__main__":
    sys.argv[1:] = paths_as_given(sys.argv[1:], PATH_KEYS)
    main()
