"""Summary of a sweep: one row per configuration (mean ± std over seeds) and plots."""

from __future__ import annotations

import csv
import logging
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

import mlplab.results as results
from mlplab.sweeps.jobs import JobFolder, find_jobs, sweep_folders

log = logging.getLogger(__name__)

GROUPING_KEYS_IGNORED = (
    "seed",
    "data.root",
    "callbacks.trial.number",
)  # grouped when only these differ
SUMMARY_COLUMNS = (
    "configuration",
    "n",
    "test_acc",
    "test_acc_std",
    "best_val_acc",
    "best_val_acc_std",
    "final_train_loss",
    "grad_norm_ratio",
    "dead_fraction",
    "saturated_fraction",
    "epochs",
    "pretrain_seconds",
    "train_seconds",
    "train_flops",
    "status",
)


def configuration_labels(jobs: list[JobFolder]) -> list[str]:
    """Per job, the overrides that vary across the sweep (seed left out), as `k=v, k=v`."""
    keys = sorted({key for job in jobs for key in job.overrides} - set(GROUPING_KEYS_IGNORED))
    varying = [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
    return [
        ", ".join(f"{key}={job.overrides.get(key, '(default)')}" for key in varying) or "all runs"
        for job in jobs
    ]


def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation; None where it was not measured (one run)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def last_epoch_mean_over_layers(job: JobFolder, prefix: str) -> float | None:
    finals = [job.series(tag)[-1] for tag in job.layer_tags(prefix)]
    return statistics.fmean(finals) if finals else None


def summarise(label: str, jobs: list[JobFolder]) -> dict[str, Any]:
    """One summary row for the jobs of one configuration."""
    completed = [job for job in jobs if job.metrics.get("status") == "completed"]

    def completed_values(key: str) -> list[float]:
        return [job.metrics[key] for job in completed if job.metrics.get(key) is not None]

    def per_job(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return statistics.fmean(present) if present else None

    test_acc, test_acc_std = mean_and_std(completed_values(results.TEST_ACC))
    best_val_acc, best_val_acc_std = mean_and_std(completed_values(results.VAL_ACC))
    statuses = defaultdict(int)
    for job in jobs:
        statuses[job.metrics.get("status", "unknown")] += 1
    return {
        "configuration": label,
        "n": len(jobs),
        "test_acc": test_acc,
        "test_acc_std": test_acc_std,
        "best_val_acc": best_val_acc,
        "best_val_acc_std": best_val_acc_std,
        "final_train_loss": per_job([job.metrics.get(results.TRAIN_LOSS) for job in jobs]),
        # The median over training: one outlier step does not move it.
        "grad_norm_ratio": per_job(
            [
                statistics.median(job.series(results.GRAD_NORM_RATIO))
                if job.series(results.GRAD_NORM_RATIO)
                else None
                for job in jobs
            ]
        ),
        "dead_fraction": per_job(
            [last_epoch_mean_over_layers(job, results.DEAD_FRACTION) for job in jobs]
        ),
        "saturated_fraction": per_job(
            [last_epoch_mean_over_layers(job, results.SATURATED_FRACTION) for job in jobs]
        ),
        "epochs": per_job([job.metrics.get("epochs") for job in jobs]),
        "pretrain_seconds": per_job([job.metrics.get(results.PRETRAIN_SECONDS) for job in jobs]),
        # The cost of the whole training: pre-training included.
        "train_seconds": per_job([job.seconds() for job in jobs]),
        "train_flops": per_job([job.flops() for job in jobs]),
        "status": ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())),
    }


def format_cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if value is None:
        return "–"
    if column in ("test_acc", "best_val_acc"):
        std = row[f"{column}_std"]
        return f"{value:.4f}" if std is None else f"{value:.4f} ± {std:.4f}"
    if column == "grad_norm_ratio":
        return f"{value:.2e}"
    if column in ("dead_fraction", "saturated_fraction"):
        return f"{value:.1%}"
    if column in ("epochs", "pretrain_seconds", "train_seconds"):
        return f"{value:.1f}"
    if column == "train_flops":
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# The markdown table shows each std next to its mean, in the same cell.
MARKDOWN_COLUMNS = tuple(column for column in SUMMARY_COLUMNS if not column.endswith("_std"))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(MARKDOWN_COLUMNS) + " |"
    rule = "|" + "---|" * len(MARKDOWN_COLUMNS)
    lines = [
        "| " + " | ".join(format_cell(row, c) for c in MARKDOWN_COLUMNS) + " |" for row in rows
    ]
    return "\n".join([header, rule, *lines]) + "\n"


def write_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write the summary table (CSV, markdown) and the plots into `sweep_dir`; return the rows."""
    from mlplab.sweeps.plots import plot_sweep  # matplotlib only when plots are drawn

    jobs = find_jobs(sweep_dir)
    groups: dict[str, list[JobFolder]] = defaultdict(list)
    for label, job in zip(configuration_labels(jobs), jobs):
        groups[label].append(job)
    rows = [summarise(label, group) for label, group in groups.items()]
    with (sweep_dir / results.SUMMARY_CSV).open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    found = sweep_dir / results.SEARCH_RESULTS
    search = search_table(OmegaConf.to_container(OmegaConf.load(found))) if found.exists() else ""
    left_out = "".join(f"\n{reason}\n" for reason in plot_sweep(groups, sweep_dir))
    (sweep_dir / results.SUMMARY_MARKDOWN).write_text(markdown_table(rows) + left_out + search)
    return rows


def search_table(found: dict[str, Any]) -> str:
    """The search's best trial, or its Pareto front, as a markdown table."""
    trials = found.get("pareto_front") or ([found["best"]] if found.get("best") else [])
    if not trials:
        return ""
    title = "Pareto front" if "pareto_front" in found else "Best trial"
    objectives = list(trials[0]["values"])
    header = ["trial", *objectives, "params", "job folder"]
    lines = [
        f"\n## Search: {title}\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for trial in trials:
        values = [f"{trial['values'][key]:.4g}" for key in objectives]
        params = ", ".join(f"{key}={value}" for key, value in trial["params"].items())
        folder = Path(trial["job_folder"]).name if trial["job_folder"] else ""
        lines.append("| " + " | ".join([str(trial["number"]), *values, params, folder]) + " |")
    return "\n".join(lines) + "\n"


class ReportAtSweepEnd(Callback):
    """Hydra callback: write the sweep report when a multirun ends, failed jobs included (a
    report in each preset's folder of a sweep of several presets)."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        for folder in sweep_folders(Path(config.hydra.sweep.dir)):
            write_report(folder)
            log.info(f"sweep report: {folder / results.SUMMARY_MARKDOWN} (plots beside it)")
