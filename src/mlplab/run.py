"""One training run: build everything from the config, fit, test, write the results."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mlplab.checkpoints import LAST_CHECKPOINT, AtomicCheckpointIO, read_checkpoint
from mlplab.classifier import Classifier
from mlplab.config_checks import check_config
from mlplab.cuda_check import skip_nvml_check_without_driver
from mlplab.distributed import process_group_per_job
from mlplab.errors import ConfigError, RunInterrupted, TrainingDiverged
from mlplab.job_resources import share_machine
from mlplab.nets import init_linear_weights

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
RESULT_KEYS = ("test/acc", "test/loss", "val/acc")


@rank_zero_only
def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> None:
    """Write metrics.json; under DDP only the first process writes, with the synced metrics."""
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def record_hyperparameters(logger: Logger, hparams: dict, metrics: dict, step: int) -> None:
    """Store the run's hyperparameters with its logger; TensorBoard also pairs them with results.

    The results get tags of their own (results/...) so that curves such as val/acc keep only
    the points measured during training.
    """
    if isinstance(logger, TensorBoardLogger):
        results = {f"results/{key.replace('/', '_')}": metrics[key] for key in RESULT_KEYS}
        logger.log_hyperparams(hparams, metrics=results, step=step)
    else:
        logger.log_hyperparams(hparams)
    logger.save()


def build_classifier(cfg: DictConfig) -> Classifier:
    """The network, initialised, inside the LightningModule with its optimiser and scheduler."""
    network = instantiate(cfg.model)
    init_linear_weights(network, instantiate(cfg.init.weight))
    if cfg.compile:
        network.compile()  # in place: parameter names, and so checkpoints, stay the same
    return Classifier(
        network,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        num_classes=cfg.model.num_classes,
        hparams=OmegaConf.to_container(cfg, resolve=True),
    )


def build_logger(cfg: DictConfig, resumed_step: int | None) -> Logger | bool:
    if not cfg.logger:
        return False
    if resumed_step is not None and cfg.logger._target_.endswith("TensorBoardLogger"):
        # TensorBoard drops the points the stopped run wrote after its checkpoint, so the
        # resumed run's curves continue from there without a second, overlapping stretch.
        return instantiate(cfg.logger, purge_step=resumed_step)
    return instantiate(cfg.logger)


def build_trainer(cfg: DictConfig, resumed_step: int | None = None) -> L.Trainer:
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    if cfg.diagnostics:
        callbacks.append(instantiate(cfg.diagnostics))
    return instantiate(
        cfg.trainer,
        logger=build_logger(cfg, resumed_step),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> tuple[Path | None, int | None]:
    """The checkpoint a `resume=` run continues from and its step; Nones for a fresh start."""
    if not cfg.get("resume"):
        return None, None
    checkpoint = output_dir / "checkpoints" / LAST_CHECKPOINT
    if not checkpoint.exists():
        log.info(f"{checkpoint} does not exist yet: training this run from the start")
        return None, None
    # Read here so that a damaged file is reported in one line, not deep inside Lightning.
    return checkpoint, read_checkpoint(checkpoint)["global_step"]


def fit_and_test(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Train on the training split, test the best checkpoint; return the run's results."""
    check_config(cfg)
    skip_nvml_check_without_driver()
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # missing or corrupt data fails here, before any training
    classifier = build_classifier(cfg)
    resume_from, resumed_step = resume_checkpoint(cfg, output_dir)
    trainer = build_trainer(cfg, resumed_step)

    with process_group_per_job(trainer):
        started = time.perf_counter()
        trainer.fit(classifier, datamodule=datamodule, ckpt_path=resume_from)
        train_seconds = time.perf_counter() - started
        fit_results = {name: float(value) for name, value in trainer.callback_metrics.items()}

        checkpoint = trainer.checkpoint_callback
        best_checkpoint = checkpoint.best_model_path if checkpoint else ""
        started = time.perf_counter()
        (test_results,) = trainer.test(
            classifier, datamodule=datamodule, ckpt_path=best_checkpoint or None, verbose=False
        )
        test_seconds = time.perf_counter() - started

    best_val_acc = checkpoint.best_model_score if checkpoint else None
    metrics = {
        "status": "completed",
        "test/acc": test_results["test/acc"],
        "test/loss": test_results["test/loss"],
        "val/acc": float(best_val_acc) if best_val_acc is not None else fit_results.get("val/acc"),
        "val/loss": fit_results.get("val/loss"),
        "train/acc": fit_results.get("train/acc"),
        "train/loss": fit_results.get("train/loss"),
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 3),
        "test_seconds": round(test_seconds, 3),
        "best_checkpoint": str(Path(best_checkpoint).relative_to(output_dir))
        if best_checkpoint
        else None,
        "seed": cfg.seed,
    }
    if trainer.logger:
        record_hyperparameters(trainer.logger, classifier.hparams, metrics, trainer.global_step)
    return metrics


def stop(output_dir: Path, status: str, message: str, exit_code: int) -> float:
    """Report a run that did not complete in one line and in metrics.json, then end it.

    A single run exits with `exit_code`; in a multirun the other jobs go on.
    """
    log.error(f"error: {message}")
    write_metrics(output_dir, {"status": status, "error": message})
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return float("nan")
    raise SystemExit(exit_code)


def train(cfg: DictConfig) -> float:
    """Run one job and write its metrics.json; return the best validation accuracy.

    A config or data mistake (exit status 2), a diverged loss (3) or SIGINT / SIGTERM
    (130 / 143, after saving a checkpoint) is reported in one line.
    """
    # Hydra's handlers already print and file Lightning's messages; Lightning's own would
    # print each of them a second time.
    logging.getLogger("lightning").handlers.clear()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    share_machine(cfg, HydraConfig.get())
    try:
        metrics = fit_and_test(cfg, output_dir)
    except ConfigError as error:
        return stop(output_dir, "failed", str(error), exit_code=2)
    except TrainingDiverged as error:
        return stop(output_dir, "diverged", str(error), exit_code=3)
    except RunInterrupted as error:
        message = f"{error}; continue with: python -m train resume={output_dir}"
        return stop(output_dir, "failed", message, exit_code=error.exit_code)
    except BaseException as error:
        write_metrics(output_dir, {"status": "failed", "error": repr(error)})
        raise
    write_metrics(output_dir, metrics)
    if rank_zero_only.rank == 0:
        log.info(
            f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  "
            f"{metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s  results: {output_dir}"
        )
    return metrics["val/acc"]
