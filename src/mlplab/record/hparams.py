"""The hyperparameters a person compares, flat and readable: what every tracker is given.

Option names as typed on the command line (`activation=relu`), the arguments those options
set (`optimizer.lr`), and the settings people sweep; nothing that names a Python class, a
callback or a path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# Config groups whose chosen option is named.
NAMED_GROUPS = ("experiment", "data", "model", "activation", "init", "optimizer", "scheduler")
# Groups whose options differ in their arguments: every argument is listed.
ARGUMENT_GROUPS = ("activation", "init", "optimizer", "scheduler")
# Single settings, where the chosen options have them.
SETTINGS = (
    "data.batch_size",
    "data.normalize",
    "model.hidden_sizes",
    "model.dropout",
    "model.batchnorm",
    "trainer.max_epochs",
    "trainer.precision",
    "seed",
)


def readable(value: Any) -> Any:
    """Numbers, text and booleans as they are; a list as its text, e.g. `[256, 256]`."""
    if isinstance(value, ListConfig):
        return str(OmegaConf.to_container(value))
    return value


def arguments(node: Any, prefix: str) -> dict[str, Any]:
    """`prefix.key` for every argument below `node`, without Hydra's `_target_`-style keys."""
    if not isinstance(node, DictConfig):
        return {}
    flat = {}
    for key, value in node.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, DictConfig):
            flat.update(arguments(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = readable(value)
    return flat


def compared_hparams(cfg: DictConfig, choices: Mapping[str, str | None]) -> dict[str, Any]:
    """The run's hyperparameters by readable name; `choices` maps config groups to options."""
    hparams: dict[str, Any] = {
        group: choices[group] for group in NAMED_GROUPS if choices.get(group) is not None
    }
    for group in ARGUMENT_GROUPS:
        hparams.update(arguments(cfg.get(group), group))
    for key in SETTINGS:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            hparams[key] = readable(value)
    return hparams
