"""The run's loggers: the trackers the `logger` group names, each told which run this is.

A tracker that keeps runs of its own (MLflow, W&B) gets the run folder's name, and a resumed
run continues the same tracker run; TensorBoard and CSV drop what the stopped run wrote
after its checkpoint. curves.csv, which the sweep report reads, is always added.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)
from omegaconf import DictConfig

from mlplab.record.curves import CurveFile
from mlplab.results import HPARAMS_RESULTS, result_tag

RUN_FOLDER_TAG = "mlplab.run_folder"  # MLflow tag: the run folder a tracker run belongs to


def build_loggers(cfg: DictConfig, resumed_step: int | None) -> list[Logger]:
    """The trackers of `cfg.logger` in their order, then the run's curves.csv."""
    output_dir = Path(cfg.output_dir)
    trackers = [
        build_tracker(tracker, output_dir, resumed_step)
        for tracker in (cfg.get("logger") or {}).values()
        if tracker
    ]
    return [*trackers, CurveFile(output_dir, resumed_step)]


def build_tracker(tracker: DictConfig, output_dir: Path, resumed_step: int | None) -> Logger:
    kind = get_class(tracker._target_)
    if issubclass(kind, MLFlowLogger):
        run_id = mlflow_run_of(tracker, output_dir) if resumed_step is not None else None
        return instantiate(
            tracker, run_name=output_dir.name, run_id=run_id, tags={RUN_FOLDER_TAG: str(output_dir)}
        )
    if issubclass(kind, WandbLogger):
        # The same id for the same folder: a resumed run goes on in the same W&B run.
        run_id = hashlib.sha1(str(output_dir).encode()).hexdigest()[:16]
        return instantiate(tracker, name=output_dir.name, id=run_id, resume="allow")
    if resumed_step is None:
        return instantiate(tracker)
    if issubclass(kind, TensorBoardLogger):
        return instantiate(tracker, purge_step=resumed_step)
    if issubclass(kind, CSVLogger):
        return csv_logger_from(instantiate(tracker), resumed_step)
    return instantiate(tracker)


def mlflow_run_of(tracker: DictConfig, output_dir: Path) -> str | None:
    """The id of the MLflow run that logged the run in `output_dir`, if there is one."""
    from mlflow import MlflowClient

    client = MlflowClient(tracker.tracking_uri)
    experiment = client.get_experiment_by_name(tracker.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{RUN_FOLDER_TAG}` = '{output_dir}'"
    )
    return runs[0].info.run_id if runs else None


def csv_logger_from(logger: CSVLogger, resumed_step: int) -> CSVLogger:
    """`logger` with the rows the stopped run wrote before `resumed_step` queued again.

    Lightning's CSV writer starts its metrics.csv afresh; queued rows are written first.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    rows = []
    if path.exists():
        with path.open(newline="") as file:
            rows = [row for row in csv.DictReader(file) if int(row["step"]) < resumed_step]
    writer = logger.experiment
    writer.metrics = [{key: value for key, value in row.items() if value != ""} for row in rows]
    return logger


def record_hyperparameters(loggers: list[Logger], hparams: dict[str, Any]) -> None:
    """Give the trackers the run's hyperparameters as it starts, so a stopped run has them too.

    TensorBoard takes them once, at the end, paired with the results (see record_results).
    """
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams)


def record_results(
    loggers: list[Logger], hparams: dict[str, Any], metrics: dict[str, Any], step: int
) -> None:
    """Log the run's final results (results/test_acc, ...) beside its hyperparameters."""
    finals = {result_tag(key): metrics[key] for key in HPARAMS_RESULTS}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, metrics=finals, step=step)
        else:
            logger.log_metrics(finals, step=step)
        logger.save()


def close_trackers(loggers: list[Logger]) -> None:
    """End the tracker runs that stay open until the process exits (W&B), so a sweep's next
    job starts a run of its own and the files are complete when the job returns."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
