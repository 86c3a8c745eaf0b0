"""`python -m mlplab.evaluate ckpt_path=<file.ckpt or run folder>`: test a saved checkpoint on
its dataset's test set."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mlplab.console import silence_known_noise
    from mlplab.evaluation import evaluate  # imported here so `--help` answers fast

    silence_known_noise()
    evaluate(cfg)


if __name__ == "__main__":
    main()
