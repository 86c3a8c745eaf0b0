"""One training job: build it from its config, fit, test the best checkpoint, write the results."""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from torch import nn

import mlplab.results as results
from mlplab.build import build_classifier, build_trainer
from mlplab.compute import training_flops
from mlplab.config_checks import check_config
from mlplab.console import what_it_trains
from mlplab.cuda_check import skip_nvml_check_without_driver
from mlplab.errors import KnownError, WriteFailed
from mlplab.hparams import compared_hparams
from mlplab.nets import linear_layers
from mlplab.safety.checkpoints import read_checkpoint
from mlplab.safety.resume import finished_metrics
from mlplab.scale.distributed import process_group_per_job
from mlplab.scale.job_resources import share_machine
from mlplab.trackers import close_trackers, record_hyperparameters, record_results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobFacts:
    """What a job knows besides its config: where it stands among the jobs of its command."""

    number: int = 0  # the job's number in its sweep (0 for a single run)
    in_sweep: bool = False  # a job of a multirun: a failure is recorded and the sweep goes on
    jobs_at_once: int = 1  # how many jobs the launcher runs side by side on this machine
    overrides: tuple[str, ...] = ()  # the job's command-line overrides
    command: list[str] | None = None  # re-runs this job alone (for the processes of DDP)
    choices: Mapping[str, str | None] = field(default_factory=dict)  # config group -> option


def resume_checkpoint(cfg: DictConfig, job: JobFacts) -> tuple[Path | None, int | None]:
    """The checkpoint this run continues from and its step; Nones for a fresh start.

    A `resume=` run continues from its last.ckpt, and so does a job of a sweep that finds one
    in its folder: a job its cluster requeued after pre-empting it (sweep folders are new for
    every sweep, so an earlier attempt of the same job is the only thing that leaves one).
    """
    if not (cfg.get("resume") or job.in_sweep):
        return None, None
    checkpoint = Path(cfg.checkpoint_dir) / results.LAST_CHECKPOINT
    if not checkpoint.exists():
        if cfg.get("resume"):
            log.info(f"{checkpoint} does not exist yet: training this run from the start")
        return None, None
    log.info(f"continuing from {checkpoint}")
    # Read here so that a damaged file is reported in one line, not deep inside Lightning.
    return checkpoint, read_checkpoint(checkpoint)["global_step"]


def run_relative(path: Path, output_dir: Path) -> str:
    """`path` relative to the run's folder when it lies inside it, else as it is."""
    return str(path.relative_to(output_dir) if path.is_relative_to(output_dir) else path)


def best_checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps the best epoch's checkpoint, if the run has one."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def validation_of(checkpoint: str) -> dict[str, float]:
    """The val/acc and val/loss of the epoch whose weights `checkpoint` holds."""
    return read_checkpoint(Path(checkpoint)).get(results.VALIDATION, {})


def layer_sizes(network: nn.Module) -> list[int]:
    """Input size, then each Linear layer's output size: [784, 256, 256, 10]."""
    layers = linear_layers(network)
    return [layers[0].in_features, *(layer.out_features for layer in layers)]


def device(trainer: L.Trainer) -> str:
    """The device type the trainer runs on, with the number of processes when there are more."""
    processes = f" x{trainer.world_size}" if trainer.world_size > 1 else ""
    return trainer.strategy.root_device.type + processes


def pretrain(
    cfg: DictConfig, network: nn.Module, training_features: torch.Tensor, trainer: L.Trainer
) -> float:
    """Pre-train the network as the init group asks, on the trainer's device; return the seconds.

    Lightning moves the network to its device later; the pre-training writes the weights into
    it wherever it is.
    """
    started = time.perf_counter()
    instantiate(cfg.init.pretraining)(
        network,
        training_features.to(trainer.strategy.root_device),
        trainer.loggers,
        seed=cfg.seed,
    )
    seconds = time.perf_counter() - started
    log.info(f"pre-trained the hidden layers in {seconds:.1f} s")
    return seconds


def training_cost(
    cfg: DictConfig, network: nn.Module, trainer: L.Trainer, training_examples: int
) -> dict[str, int]:
    """Floating-point operations of the whole run, counted from its config, shape and steps.

    They count every step of the run, a resumed one included, and the pre-training its
    checkpoint started from.
    """
    examples_seen = trainer.global_step * cfg.data.batch_size * trainer.world_size
    pretraining = cfg.init.get("pretraining")
    return {
        results.TRAIN_FLOPS: training_flops(network, examples_seen),
        results.PRETRAIN_FLOPS: instantiate(pretraining).flops(network, training_examples)
        if pretraining
        else 0,
    }


def fit_and_test(cfg: DictConfig, job: JobFacts) -> dict[str, Any]:
    """Train on the training split, test the best checkpoint; return the run's results."""
    output_dir = Path(cfg.output_dir)
    check_config(cfg, job.overrides)
    skip_nvml_check_without_driver()
    share_machine(cfg, job.number, job.jobs_at_once)
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
        pretrain_seconds = pretrain(cfg, classifier.network, training_features, trainer)

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


def stage_values(values: Mapping[str, float], stage: str) -> dict[str, float | None]:
    """{"acc", "loss"} of `stage` among logged `values` such as {"val/acc": ...}."""
    return {name: values.get(results.metric_key(stage, name)) for name in ("acc", "loss")}


def run_job(cfg: DictConfig, job: JobFacts) -> dict[str, Any]:
    """Run one job and write its metrics.json; return its metrics.

    A job of a sweep that finds itself finished (a sweep run again in its folder, a job
    requeued after it completed) keeps its results rather than training nothing over them.
    """
    output_dir = Path(cfg.output_dir)
    finished = finished_metrics(output_dir, cfg.trainer.max_epochs) if job.in_sweep else None
    if finished is not None:
        log.info(f"{output_dir} has finished already: its results stay as they are")
        return finished
    return record_outcome(output_dir, lambda: fit_and_test(cfg, job))


def record_outcome(output_dir: Path, train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Write the metrics.json of the job that `train` trains; return its metrics.

    A job that fails records its status and error in metrics.json before the error goes on
    (under DDP only the first process writes). A full disk or a read-only folder becomes
    WriteFailed, which says what could not be written and how to continue.
    """
    try:
        metrics = train()
        record(output_dir, metrics)
    except BaseException as error:
        failure = known_error(error, output_dir)
        if failure is None:
            record_failure(output_dir, results.failed_metrics("failed", repr(error)))
            raise
        if failure.resumable:
            failure.args = (f"{failure}; continue with: python -m train resume={output_dir}",)
        record_failure(output_dir, results.failed_metrics(failure.status, str(failure)))
        if failure is error:
            raise
        raise failure from error
    if rank_zero_only.rank == 0:
        log.info(
            f"test/acc {metrics[results.TEST_ACC]:.4f}  test/loss {metrics[results.TEST_LOSS]:.4f}"
            f"  {metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s  "
            f"results: {output_dir}"
        )
    return metrics


# Write errors that more space or a writable folder would fix.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def known_error(error: BaseException, output_dir: Path) -> KnownError | None:
    """`error` as the KnownError a user acts on, or None for an unexpected one."""
    if isinstance(error, KnownError):
        return error
    if isinstance(error, OSError) and error.errno in FULL_OR_READ_ONLY:
        free = shutil.disk_usage(output_dir).free if output_dir.exists() else 0
        return WriteFailed(
            f"cannot write {error.filename or output_dir} ({error.strerror}); "
            f"{free / 2**20:.1f} MiB free in {output_dir}: make room or fix the folder"
        )
    return None


@rank_zero_only
def record(output_dir: Path, metrics: dict[str, Any]) -> None:
    results.write_metrics(output_dir, metrics)


def record_failure(output_dir: Path, metrics: dict[str, Any]) -> None:
    """Record a failure where the folder still takes it; the error itself is reported anyway."""
    try:
        record(output_dir, metrics)
    except OSError as error:
        log.warning(f"could not record the failure in {output_dir / results.METRICS_FILE}: {error}")
