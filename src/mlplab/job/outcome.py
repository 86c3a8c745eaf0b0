"""What a job leaves in its folder when it ends, however it trained: metrics.json with its
results or its failure, the result line, and the one-line error a user can act on."""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

import mlplab.results as results
from mlplab.errors import KnownError, WriteFailed
from mlplab.safety.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


def run_relative(path: Path, output_dir: Path) -> str:
    """`path` relative to the run's folder when it lies inside it, else as it is."""
    return str(path.relative_to(output_dir) if path.is_relative_to(output_dir) else path)


def validation_of(checkpoint: str) -> dict[str, float]:
    """The val/acc and val/loss of the epoch whose weights `checkpoint` holds."""
    return read_checkpoint(Path(checkpoint)).get(results.VALIDATION, {})


def stage_values(values: Mapping[str, float], stage: str) -> dict[str, float | None]:
    """{"acc", "loss"} of `stage` among logged `values` such as {"val/acc": ...}."""
    return {name: values.get(results.metric_key(stage, name)) for name in ("acc", "loss")}


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
