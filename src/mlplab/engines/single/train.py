"""The single engine: one network, Lightning's Trainer and callbacks; fit, then test the best
checkpoint, and hand the job's results to metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from torch import nn

import mlplab.results as results
from mlplab.config.checks import check_config
from mlplab.job.build import build_classifier, build_trainer
from mlplab.job.facts import JobFacts
from mlplab.job.outcome import run_relative, stage_values, validation_of
from mlplab.job.pretraining import pretrain, pretraining_flops
from mlplab.model.compute import training_flops
from mlplab.model.nets import layer_sizes
from mlplab.record.console import what_it_trains
from mlplab.record.hparams import compared_hparams
from mlplab.record.trackers import close_trackers, record_hyperparameters, record_results
from mlplab.safety.checkpoints import read_checkpoint
from mlplab.safety.resume import checkpoint_to_continue
from mlplab.scale.cuda_check import skip_nvml_check_without_driver
from mlplab.scale.distributed import process_group_per_job
from mlplab.scale.job_resources import flush_denormals, reuse_freed_memory, share_machine

log = logging.getLogger(__name__)


def resume_checkpoint(cfg: DictConfig, job: JobFacts) -> tuple[Path | None, int | None]:
    """The checkpoint this run continues from (mlplab.safety.resume) and its step; Nones for a
    fresh start."""
    checkpoint = checkpoint_to_continue(cfg, job.in_sweep)
    if checkpoint is None:
        return None, None
    log.info(f"continuing from {checkpoint}")
    # Read here so that a damaged file is reported in one line, not deep inside Lightning.
    return checkpoint, read_checkpoint(checkpoint)["global_step"]


def best_checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps the best epoch's checkpoint, if the run has one."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def device(trainer: L.Trainer) -> str:
    """The device type the trainer runs on, with the number of processes when there are more."""
    processes = f" x{trainer.world_size}" if trainer.world_size > 1 else ""
    return trainer.strategy.root_device.type + processes


def training_cost(
    cfg: DictConfig, network: nn.Module, trainer: L.Trainer, training_examples: int
) -> dict[str, int]:
    """Floating-point operations of the whole run, counted from its config, shape and steps.

    They count every step of the run, a resumed one included, and the pre-training its
    checkpoint started from.
    """
    examples_seen = trainer.global_step * cfg.data.batch_size * trainer.world_size
    return {
        results.TRAIN_FLOPS: training_flops(network, examples_seen),
        results.PRETRAIN_FLOPS: pretraining_flops(cfg, network, training_examples),
    }


def fit_and_test(cfg: DictConfig, job: JobFacts) -> dict[str, Any]:
    """Train on the training split, test the best checkpoint; return the run's results."""
    output_dir = Path(cfg.output_dir)
    check_config(cfg, job.overrides)
    skip_nvml_check_without_driver()
    share_machine(cfg, job.number, job.jobs_at_once)
    flush_denormals(cfg)
    reuse_freed_memory()
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # missing or corrupt data fails here, before any training
    classifier = build_classifier(cfg)
    resume_from, resumed_step = resume_checkpoint(cfg, job)
    trainer = build_trainer(cfg, resumed_step, job.command)
    hparams = compared_hparams(cfg, job.choices)
    if resumed_step is None:  # a resumed run's trackers have them from its start, as .hydra/ has
        record_hyperparameters(trainer.loggers, hparams)
    if rank_zero_only.rank == 0:
        log.info(what_it_trains(cfg, job.choices, layer_sizes(classifier.network), device(trainer)))
    training_features, _ = datamodule.splits["train"]
    # A resumed run's checkpoint holds the pre-trained (and further trained) weights.
    pretrain_seconds = 0.0
    if cfg.init.get("pretraining") and resume_from is None:
        pretrain_seconds = pretrain(
            [cfg],
            [classifier.network],
            training_features.unsqueeze(0),
            [trainer.loggers],
            trainer.strategy.root_device,
        )

    with process_group_per_job(trainer):
        started = time.perf_counter()
        trainer.fit(classifier, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        train_seconds = time.perf_counter() - started
        fit_results = {name: float(value) for name, value in trainer.callback_metrics.items()}

        checkpoint = best_checkpoint_callback(trainer)
        best_checkpoint = checkpoint.best_model_path if checkpoint else ""
        started = time.perf_counter()
        (test_results,) = trainer.test(
            classifier,
            datamodule=datamodule,
            ckpt_path=best_checkpoint or None,
            verbose=False,
            weights_only=True,
        )
        test_seconds = time.perf_counter() - started

    # The validation of the epoch tested: the best one, or the last without a best checkpoint.
    tested = validation_of(best_checkpoint) if best_checkpoint else fit_results
    metrics = results.completed_metrics(
        test=stage_values(test_results, "test"),
        validation=stage_values(tested, "val"),
        training=stage_values(fit_results, "train"),
        epochs=trainer.current_epoch,
        seconds={
            results.PRETRAIN_SECONDS: pretrain_seconds,
            results.TRAIN_SECONDS: train_seconds,
            results.TEST_SECONDS: test_seconds,
        },
        flops=training_cost(cfg, classifier.network, trainer, len(training_features)),
        best_checkpoint=run_relative(Path(best_checkpoint), output_dir)
        if best_checkpoint
        else None,
        seed=cfg.seed,
    )
    record_results(trainer.loggers, hparams, metrics, trainer.global_step)
    close_trackers(trainer.loggers)
    return metrics
