"""What a run prints: one line saying what it trains, the progress bar and the result line.

Messages of dependencies that a user can do nothing about are silenced one by one, by their
text and where they come from; every other warning still shows.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping

from omegaconf import DictConfig

# Log messages already said by mlplab's own lines, or that no setting of a run changes.
KNOWN_NOISE = {
    "lightning.pytorch.utilities.rank_zero": (
        r"(GPU|TPU|HPU) available: ",  # the line of what the run trains names its device
        r"💡 Tip: ",  # an advertisement for a cloud logger
        r"`Trainer.fit` stopped: ",  # the result line follows
        r"Restoring states from the checkpoint path at ",  # "continuing from" says it
        r"Restored all states from the checkpoint at ",
        r"Loaded model weights from the checkpoint at ",  # the best epoch is tested
    ),
    "lightning.pytorch.accelerators.cuda": (r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: ",),
    "lightning.pytorch.loggers.mlflow": (r"Experiment with name .* not found\. Creating it\.",),
    "mlflow.store.db.utils": (r"Creating initial MLflow database tables", r"Updating database"),
    "alembic.runtime.migration": (r"Context impl ", r"Will assume ", r"Running upgrade "),
}
# Python warnings raised inside dependencies, by category and message.
KNOWN_WARNINGS = (
    # torch deprecates a check that Lightning's own pytree helper still makes.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # A resumed run writes its checkpoints into its own folder again, as it should.
    (UserWarning, r"Checkpoint directory .* exists and is not empty"),
)


class DropMessages(logging.Filter):
    """Drops the records of one logger whose message starts with one of `patterns`."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{pattern})" for pattern in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def silence_known_noise() -> None:
    """Install the filters of KNOWN_NOISE and KNOWN_WARNINGS (idempotent)."""
    for name, patterns in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropMessages) for existing in logger.filters):
            logger.addFilter(DropMessages(patterns))
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def option_name(cfg: DictConfig, choices: Mapping[str, str | None], group: str) -> str:
    """The option chosen for `group` as typed on the command line, else its class's name."""
    if choices.get(group):
        return choices[group]
    node = cfg.get(group)
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    return target.rsplit(".", 1)[-1] if target else "default"


def what_it_trains(
    cfg: DictConfig, choices: Mapping[str, str | None], layer_sizes: list[int], device: str
) -> str:
    """One line: dataset, network and layer sizes, activation, init, optimiser, device, epochs."""
    parts = [
        option_name(cfg, choices, "data"),
        f"{option_name(cfg, choices, 'model')} {'-'.join(map(str, layer_sizes))}",
    ]
    if "activation" in cfg.model:
        parts.append(option_name(cfg, choices, "activation"))
    parts += [
        f"init {option_name(cfg, choices, 'init')}",
        f"{option_name(cfg, choices, 'optimizer')} lr {cfg.optimizer.lr:g}",
        device,
        f"{cfg.trainer.max_epochs} epochs",
    ]
    return f"training {' · '.join(parts)} -> {cfg.output_dir}"
