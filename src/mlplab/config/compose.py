"""The config `python -m train` would get, composed outside a Hydra app: tests, the bench."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[3] / "conf"


def compose_train_config(output_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose conf/train.yaml with `overrides`, as a single run whose folder is `output_dir`."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=[f"output_dir={output_dir}", *overrides])
    output_dir.mkdir(parents=True, exist_ok=True)
    return cfg
