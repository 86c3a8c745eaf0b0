"""A packed group: build its jobs as one stacked network, fit, test each job's best weights.

Each job gets what a single run of it writes (its trackers' curves, best and last
checkpoints; metrics.json through mlplab.job.outcome.record_outcome), computed from its own slice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from copy import copy as shallow_copy
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

import mlplab.results as results
from mlplab.config.checks import check_config
from mlplab.engines.packed.checkpoints import PackedCheckpoints, PackedJob, SaveEveryJobOnSignal
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.engines.packed.curves import PackedCurves, write
from mlplab.engines.packed.data import PackedMNIST
from mlplab.engines.packed.network import PackedNetworks
from mlplab.engines.packed.resume import (
    continue_together,
    jobs_last_checkpoints,
    packed_checkpoint,
    restore_jobs,
    save_for_trainer,
)
from mlplab.engines.packed.trials import PackedTrials
from mlplab.engines.single.train import fit_and_test
from mlplab.errors import KnownError
from mlplab.job.build import build_network
from mlplab.job.facts import JobFacts
from mlplab.job.outcome import run_relative, validation_of
from mlplab.job.pretraining import pretrain, pretraining_flops
from mlplab.model.compute import training_flops
from mlplab.model.nets import layer_sizes
from mlplab.record.console import what_it_trains
from mlplab.record.hparams import compared_hparams
from mlplab.record.trackers import (
    build_loggers,
    close_trackers,
    record_hyperparameters,
    record_results,
)
from mlplab.safety.checkpoints import AtomicCheckpointIO
from mlplab.safety.resume import finished_metrics
from mlplab.scale.cuda_check import skip_nvml_check_without_driver
from mlplab.scale.job_resources import flush_denormals, reuse_freed_memory, share_machine
from mlplab.search.pruning import Trial

log = logging.getLogger(__name__)

Outcome = Callable[[], dict[str, Any]]  # returns a job's metrics, or raises what stopped it


def finished(metrics: dict[str, Any]) -> Outcome:
    return lambda: metrics


def failed(error: BaseException) -> Outcome:
    def reraise() -> dict[str, Any]:
        raise error

    return reraise


def packed_jobs(
    cfgs: list[DictConfig],
) -> tuple[list[nn.Module], list[torch.Generator], list[PackedJob]]:
    """Each job's own network, built as its single run builds it, the generator of its dropout
    masks, and its record."""
    networks, generators, jobs = [], [], []
    for cfg in cfgs:
        L.seed_everything(cfg.seed, verbose=False)
        network = build_network(cfg)
        # Dropout's masks continue from where the job's global generator stands now, as alone.
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
        networks.append(network)
        jobs.append(PackedJob(cfg, training_flops(network, examples=1), layer_sizes(network)))
    return networks, generators, jobs


def pretrain_each(
    networks: list[nn.Module], jobs: list[PackedJob], data: PackedMNIST, device: torch.device
) -> None:
    """Pre-train each job's network on its own training split, as its single run does; the
    jobs of one pre-training setting together, so each job's seconds are its group's."""
    together: dict[str, list[int]] = {}  # a pre-training setting: the copies it pre-trains
    for copy, job in enumerate(jobs):
        if job.cfg.init.get("pretraining"):
            together.setdefault(OmegaConf.to_yaml(job.cfg.init.pretraining), []).append(copy)
    for copies in together.values():
        features = data.training_features(copies)
        seconds = pretrain(
            [jobs[copy].cfg for copy in copies],
            [networks[copy] for copy in copies],
            features,
            [jobs[copy].loggers for copy in copies],
            device,
        )
        for copy in copies:
            job = jobs[copy]
            job.pretrain_seconds = seconds
            job.pretrain_flops = pretraining_flops(job.cfg, networks[copy], features.shape[1])


def packed_callbacks(cfg: DictConfig, jobs: list[PackedJob]) -> list[L.Callback]:
    """The group's progress bar, and each job's curves, diagnostics, checkpoints and the save
    on a signal, as its callbacks and diagnostics settings ask (mlplab.sweeps.packing checks
    that each setting is one these honour)."""
    callbacks = cfg.callbacks
    monitor = callbacks.get("learning_rate_monitor")
    lr_tag = f"lr-{get_class(cfg.optimizer._target_).__name__}" if monitor else None
    diagnostics = instantiate(cfg.diagnostics) if cfg.get("diagnostics") else None
    last = callbacks.get("last_checkpoint")
    checkpoints = PackedCheckpoints(jobs, last.every_n_train_steps if last else None)
    packed = [
        PackedCurves(
            jobs,
            lr_tag,
            diagnostics=diagnostics is not None,
            histograms=bool(diagnostics and diagnostics.histograms),
            lr_every_step=bool(monitor and monitor.get("logging_interval") == "step"),
        ),
        checkpoints,
    ]
    if callbacks.get("save_on_signal"):
        packed.append(SaveEveryJobOnSignal(checkpoints))
    if callbacks.get("trial"):  # a search's: each job its own trial
        packed.append(PackedTrials([trial_of(job.cfg) for job in jobs]))
    progress_bar = callbacks.get("progress_bar")
    return [instantiate(progress_bar), *packed] if progress_bar else packed


def trial_of(cfg: DictConfig) -> Trial:
    """The search's trial of the job of `cfg`, as its single run's callback reaches it."""
    return instantiate(cfg.callbacks.trial).trial


def fit_and_test_packed(
    cfgs: list[DictConfig], facts: list[JobFacts], extra_callbacks: tuple[L.Callback, ...] = ()
) -> list[Outcome]:
    """Train the jobs of `cfgs` as one packed network; each job's outcome, in order.

    A job whose config fails its checks fails alone; an error of the group fails each job.
    A job of a sweep that finds itself finished keeps its results, as a single job does.
    """
    outcomes: list[Outcome | None] = [None] * len(cfgs)
    usable = []
    for index, (cfg, job) in enumerate(zip(cfgs, facts)):
        done = finished_metrics(Path(cfg.output_dir), cfg.trainer.max_epochs)
        if job.in_sweep and done is not None:
            log.info(f"{cfg.output_dir} has finished already: its results stay as they are")
            outcomes[index] = finished(done)
            continue
        try:
            check_config(cfg, job.overrides)
            usable.append(index)
        except KnownError as error:
            outcomes[index] = failed(error)
    if not usable:
        return outcomes
    group, group_facts = [cfgs[i] for i in usable], [facts[i] for i in usable]
    paths = jobs_last_checkpoints(group, group_facts)
    singles = continue_together(paths) if paths else None
    if paths and singles is None:
        log.warning("the group's jobs stopped at different steps: each continues alone")
        for index, cfg, job in zip(usable, group, group_facts):
            outcomes[index] = partial(fit_and_test, cfg, job)  # trains when it is recorded
        return outcomes
    try:
        trained = train_group(group, group_facts, extra_callbacks, singles)
    except Exception as error:  # recorded in each job's metrics.json, as a single run's
        trained = [failed(shallow_copy(error)) for _ in usable]  # each job's message its own
    for index, outcome in zip(usable, trained):
        outcomes[index] = outcome
    return outcomes


def train_group(
    cfgs: list[DictConfig],
    facts: list[JobFacts],
    extra_callbacks: tuple[L.Callback, ...] = (),
    singles: list[dict] | None = None,
) -> list[Outcome]:
    """Fit and test the jobs of `cfgs` packed; `extra_callbacks` join the trainer's (timers);
    `singles`, the jobs' last.ckpt contents to continue from (continue_together)."""
    first = cfgs[0]  # every setting but the per-copy ones is the same in every job
    skip_nvml_check_without_driver()
    share_machine(first, facts[0].number, facts[0].jobs_at_once)  # the group's share
    flush_denormals(first)
    reuse_freed_memory()
    networks, generators, jobs = packed_jobs(cfgs)
    datamodule = PackedMNIST(instantiate(first.data), [cfg.data.seed for cfg in cfgs])
    datamodule.prepare_data()
    datamodule.setup("fit")  # missing or corrupt data fails here, before any training
    hparams = [compared_hparams(cfg, job.choices) for cfg, job in zip(cfgs, facts)]
    resumed_step = singles[0]["global_step"] if singles else None
    for job, job_hparams in zip(jobs, hparams):
        job.loggers = build_loggers(job.cfg, resumed_step)
        if resumed_step is None:  # a resumed job's trackers have them from its start
            record_hyperparameters(job.loggers, job_hparams)
        checkpoint = job.cfg.callbacks.get("model_checkpoint")
        job.best = instantiate(checkpoint) if checkpoint else None
    trainer = instantiate(
        first.trainer,
        logger=False,
        callbacks=[*packed_callbacks(first, jobs), *extra_callbacks],
        plugins=[AtomicCheckpointIO()],
    )
    numbers = ", ".join(f"#{job.number}" for job in facts)
    log.info(f"training jobs {numbers} as one packed network of {len(jobs)} copies")
    device = trainer.strategy.root_device.type
    for job, job_facts in zip(jobs, facts):
        log.info(what_it_trains(job.cfg, job_facts.choices, job.layer_sizes, device))
    if not singles:  # a resumed job's checkpoint holds its pre-trained, further trained weights
        pretrain_each(networks, jobs, datamodule, trainer.strategy.root_device)
    network = PackedNetworks(networks, generators)
    module = PackedClassifier(
        network,
        optimizer=instantiate(first.optimizer),  # at the first job's rate: the others' scale 1
        scheduler=instantiate(first.scheduler) if first.scheduler else None,
        lr_scales=[cfg.optimizer.lr / first.optimizer.lr for cfg in cfgs],
    )
    resume_from = None
    if singles:
        restore_jobs(singles, module, jobs)
        resume_from = save_for_trainer(packed_checkpoint(singles, module), jobs)

    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except BaseException:
        for job in jobs:  # what each job logged up to the stop stays in its files
            for logger in job.loggers:
                logger.finalize("failed")
            close_trackers(job.loggers)
        raise
    finally:
        if resume_from:
            resume_from.unlink()
    train_seconds = time.perf_counter() - started
    for copy in module.active():  # each job is tested at its best epoch; a stopped one is not
        if jobs[copy].best_state is not None:
            network.set_copy(copy, jobs[copy].best_state)
    started = time.perf_counter()
    if module.active():  # when every copy stopped, no job is left to test
        trainer.test(module, datamodule=datamodule, verbose=False)
    test_seconds = time.perf_counter() - started

    seconds = {results.TRAIN_SECONDS: train_seconds, results.TEST_SECONDS: test_seconds}
    return [
        job_outcome(trainer, module, copy, job, hparams[copy], seconds)
        for copy, job in enumerate(jobs)
    ]


def job_outcome(
    trainer: L.Trainer,
    module: PackedClassifier,
    copy: int,
    job: PackedJob,
    hparams: dict[str, Any],
    seconds: dict[str, float],
) -> Outcome:
    """Copy `copy`'s metrics, as a single run of its job reports them, also to its trackers."""
    if copy in module.stopped:
        close_trackers(job.loggers)
        return failed(module.stopped[copy])
    fit_results = module.epoch_results  # the last epoch's
    best = job.best.best_model_path if job.best else ""
    metrics = results.completed_metrics(
        test=copy_values(module.test_results, copy),
        validation=tested_validation(best, fit_results, copy),
        training=copy_values(fit_results.get("train", {}), copy),
        epochs=trainer.current_epoch,
        seconds={
            **seconds,
            results.PRETRAIN_SECONDS: job.pretrain_seconds,
        },  # training: the group's
        flops={
            results.TRAIN_FLOPS: job.flops_per_example
            * trainer.global_step
            * job.cfg.data.batch_size,
            results.PRETRAIN_FLOPS: job.pretrain_flops,
        },
        best_checkpoint=run_relative(Path(best), job.folder) if best else None,
        seed=job.cfg.seed,
        packed_jobs=module.network.copies,
    )
    tested = {key: metrics[key] for key in (results.TEST_ACC, results.TEST_LOSS)}
    write(job, {**tested, "epoch": float(trainer.current_epoch)}, trainer.global_step)
    record_results(job.loggers, hparams, metrics, trainer.global_step)
    close_trackers(job.loggers)
    return finished(metrics)


def copy_values(means: dict[str, torch.Tensor], copy: int) -> dict[str, float | None]:
    """{"acc", "loss"} of copy `copy` among (K,) `means`."""
    return {name: float(means[name][copy]) if name in means else None for name in ("acc", "loss")}


def tested_validation(best: str, fit_results: dict, copy: int) -> dict[str, float | None]:
    """val acc and loss of the epoch tested: the best checkpoint's, else the last epoch's."""
    if best:
        validated = validation_of(best)
        return {name: validated.get(results.metric_key("val", name)) for name in ("acc", "loss")}
    return copy_values(fit_results.get("val", {}), copy)
