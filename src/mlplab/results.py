"""What a run leaves in its folder (file names, metric keys, tag names, metrics.json) and
what the sweep report writes.

Everything that writes or reads a run's results (the run, its diagnostics, the sweep report
and its plots) takes these names from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.csv"  # every logged scalar as step,tag,value rows, whatever the trackers
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lock"  # held by the run that writes the folder


def metric_key(stage: str, name: str) -> str:
    """`stage/name`, e.g. val/acc: the key of a metric the classifier logs."""
    return f"{stage}/{name}"


# Metric keys: logged by the classifier, written to metrics.json.
TRAIN_LOSS, TRAIN_ACC = metric_key("train", "loss"), metric_key("train", "acc")
VAL_LOSS, VAL_ACC = metric_key("val", "loss"), metric_key("val", "acc")
TEST_LOSS, TEST_ACC = metric_key("test", "loss"), metric_key("test", "acc")
TRAIN_LOSS_STEP = metric_key("train", "loss_step")  # every log_every_n_steps steps
# In every checkpoint: the val/acc and val/loss of the validation that preceded it.
VALIDATION = "validation"
# The cost of training, in metrics.json: seconds this process spent, and floating-point
# operations counted from the network's shape and the run's steps. Pre-training is kept apart.
TRAIN_SECONDS, PRETRAIN_SECONDS = "train_seconds", "pretrain_seconds"
TEST_SECONDS = "test_seconds"
TRAIN_FLOPS, PRETRAIN_FLOPS = "train_flops", "pretrain_flops"
EPOCHS, SEED, STATUS = "epochs", "seed", "status"
BEST_CHECKPOINT = "best_checkpoint"  # relative to the run's folder, or null without one
PACKED_JOBS = "packed_jobs"  # how many jobs trained together, in train_seconds
# The results each tracker gets beside the hyperparameters (TensorBoard's HPARAMS tab pairs them).
HPARAMS_RESULTS = (TEST_ACC, TEST_LOSS, VAL_ACC)


def result_tag(key: str) -> str:
    """results/test_acc for test/acc: the final result, apart from the curve of the same name."""
    return f"results/{key.replace('/', '_')}"


# Diagnostics tags.
GRAD_NORM = "grad_norm"
GRAD_NORM_RATIO = "grad_norm/first_to_last_ratio"
ACTIVATION_MEAN = "activation/mean"
DEAD_FRACTION = "activation/dead_fraction"
SATURATED_FRACTION = "activation/saturated_fraction"
# Pre-training tags: one curve per hidden layer, one point per pre-training epoch, logged at
# negative steps: pre-training comes before the supervised training's step 0.
RECONSTRUCTION_ERROR = "pretrain/reconstruction_error"


# What the sweep report writes into a sweep folder.
SUMMARY_CSV, SUMMARY_MARKDOWN = "summary.csv", "summary.md"
VAL_ACC_PLOT, TRAIN_LOSS_PLOT, GRAD_NORMS_PLOT = "val_acc.png", "train_loss.png", "grad_norms.png"
COMPUTE_PLOT = "test_acc_vs_compute.png"
REPORT_FILES = (
    SUMMARY_CSV,
    SUMMARY_MARKDOWN,
    VAL_ACC_PLOT,
    TRAIN_LOSS_PLOT,
    GRAD_NORMS_PLOT,
    COMPUTE_PLOT,
)
# What a search writes into its sweep folder: its best trial, or its Pareto front.
SEARCH_RESULTS = "optimization_results.yaml"


def layer_tag(prefix: str, layer: int) -> str:
    """`prefix/layer_k`, the tag of a per-layer value (layers count from 1 at the input)."""
    return f"{prefix}/layer_{layer}"


def layer_number(tag: str) -> int:
    """k of a `prefix/layer_k` tag."""
    return int(tag.rsplit("_", 1)[1])


def completed_metrics(
    *,
    test: dict[str, float],
    validation: dict[str, float | None],
    training: dict[str, float | None],
    epochs: int,
    seconds: dict[str, float],
    flops: dict[str, int],
    best_checkpoint: str | None,
    seed: int,
    packed_jobs: int | None = None,
) -> dict[str, Any]:
    """metrics.json of a job that completed, however it trained.

    `test`, `validation` and `training` map "acc" and "loss" to the job's values (validation:
    of the epoch tested); `seconds` and `flops` hold the TRAIN_ / PRETRAIN_ / TEST_ keys.
    """
    metrics = {
        STATUS: "completed",
        TEST_ACC: test["acc"],
        TEST_LOSS: test["loss"],
        VAL_ACC: validation.get("acc"),
        VAL_LOSS: validation.get("loss"),
        TRAIN_ACC: training.get("acc"),
        TRAIN_LOSS: training.get("loss"),
        EPOCHS: epochs,
        PRETRAIN_SECONDS: round(seconds.get(PRETRAIN_SECONDS, 0.0), 3),
        TRAIN_SECONDS: round(seconds[TRAIN_SECONDS], 3),
        TEST_SECONDS: round(seconds[TEST_SECONDS], 3),
        TRAIN_FLOPS: flops[TRAIN_FLOPS],
        PRETRAIN_FLOPS: flops.get(PRETRAIN_FLOPS, 0),
        BEST_CHECKPOINT: best_checkpoint,
        SEED: seed,
    }
    return metrics if packed_jobs is None else {**metrics, PACKED_JOBS: packed_jobs}


def failed_metrics(status: str, error: str) -> dict[str, str]:
    """metrics.json of a job that did not complete: its status and what stopped it."""
    return {STATUS: status, "error": error}


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write metrics.json through a temporary file, so it is always the old or the new one."""
    path = run_dir / METRICS_FILE
    partial = path.with_name(f".{METRICS_FILE}.partial")
    try:
        partial.write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A run's metrics.json, or None where the run has not written one."""
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None
