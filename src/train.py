"""`python -m train [overrides]`: train and test one configuration (or a sweep with -m)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from mlplab.run import train  # imported here so `--help` and config errors answer fast

    return train(cfg)


if __name__ == "__main__":
    main()
