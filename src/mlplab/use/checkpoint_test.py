"""Test any saved checkpoint on the test set, rebuilt from the config stored inside it."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mlplab.results as results
from mlplab.errors import ConfigError, one_line_errors
from mlplab.job.build import load_classifier
from mlplab.safety.checkpoints import checkpoint_file, read_checkpoint_to_rebuild

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    ckpt_path: Path, data_root: str | None, accelerator: str, dataset: str | None = None
) -> dict:
    """`test/acc` and `test/loss` of the network saved in `ckpt_path` (or a run folder's best).

    `dataset` is the one the caller means to test on: the checkpoint's own dataset is the only
    one it can be tested on, so another is refused.
    """
    ckpt_path = checkpoint_file(ckpt_path)
    checkpoint = read_checkpoint_to_rebuild(ckpt_path)
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    trained_on = run_cfg.data.dataset
    if dataset not in (None, trained_on):
        raise ConfigError(
            f"{ckpt_path} was trained on {trained_on}, so it cannot be tested on {dataset}: "
            f"drop data=, or pass a checkpoint trained on {dataset}"
        )
    if data_root is not None:
        run_cfg.data.root = data_root
    datamodule = instantiate(run_cfg.data)
    datamodule.prepare_data()
    classifier = load_classifier(run_cfg, checkpoint)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=run_cfg.trainer.precision,
        limit_test_batches=run_cfg.trainer.limit_test_batches,  # as the run tested itself
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (scores,) = trainer.test(classifier, datamodule=datamodule, verbose=False)
    return scores


def evaluate(cfg: DictConfig) -> dict:
    """Print the checkpoint's test results in one line; a mistake in one line and exit status 2."""
    logging.getLogger("lightning").handlers.clear()
    dataset = cfg.data.dataset if cfg.get("data") else None
    with one_line_errors():
        scores = evaluate_checkpoint(Path(cfg.ckpt_path), cfg.data_root, cfg.accelerator, dataset)
    log.info(f"test/acc {scores[results.TEST_ACC]:.4f}  test/loss {scores[results.TEST_LOSS]:.4f}")
    return scores
