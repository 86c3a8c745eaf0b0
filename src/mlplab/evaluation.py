"""Test any saved checkpoint on the test set, rebuilt from the config stored inside it."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlplab import results
from mlplab.build import build_classifier
from mlplab.errors import one_line_errors
from mlplab.safety.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


def evaluate_checkpoint(ckpt_path: Path, data_root: str | None, accelerator: str) -> dict:
    """`test/acc` and `test/loss` of the network saved in `ckpt_path`."""
    checkpoint = read_checkpoint(ckpt_path)
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    if data_root is not None:
        run_cfg.data.root = data_root
    datamodule = instantiate(run_cfg.data)
    datamodule.prepare_data()
    classifier = build_classifier(run_cfg)
    classifier.load_state_dict(checkpoint["state_dict"])
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
    with one_line_errors():
        scores = evaluate_checkpoint(Path(cfg.ckpt_path), cfg.data_root, cfg.accelerator)
    log.info(f"test/acc {scores[results.TEST_ACC]:.4f}  test/loss {scores[results.TEST_LOSS]:.4f}")
    return scores
