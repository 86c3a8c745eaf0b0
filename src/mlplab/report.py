"""Summary of a sweep: one row per configuration (mean ± std over seeds) and plots."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

GROUPING_KEYS_IGNORED = ("seed", "data.root")  # runs that differ only by these are grouped
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
    "train_seconds",
    "status",
)


@dataclass
class Job:
    """One run of the sweep: its command-line overrides, metrics.json and TensorBoard scalars."""

    folder: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def series(self, tag: str) -> list[float]:
        return [value for _, value in self.scalars.get(tag, [])]

    def layer_tags(self, prefix: str) -> list[str]:
        """Tags `prefix/layer_1`, `prefix/layer_2`, ... present in this job, in layer order."""
        tags = [tag for tag in self.scalars if tag.startswith(f"{prefix}/layer_")]
        return sorted(tags, key=lambda tag: int(tag.rsplit("_", 1)[1]))


def read_overrides(folder: Path) -> dict[str, str]:
    lines = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (line.lstrip("+~").split("=", 1) for line in lines if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("hydra.")}


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not log_dir.is_dir():
        return {}
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    return {
        tag: [(point.step, point.value) for point in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def read_job(folder: Path) -> Job:
    metrics_file = folder / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
    else:
        metrics = {"status": "unfinished", "error": "no metrics.json: the job stopped early"}
    return Job(folder, read_overrides(folder), metrics, read_scalars(folder / "tensorboard"))


def find_jobs(sweep_dir: Path) -> list[Job]:
    folders = [path.parent.parent for path in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return [read_job(folder) for folder in sorted(folders, key=lambda path: path.name)]


def configuration_labels(jobs: list[Job]) -> list[str]:
    """Per job, the overrides that vary across the sweep (seed left out), as `k=v, k=v`."""
    keys = sorted({key for job in jobs for key in job.overrides} - set(GROUPING_KEYS_IGNORED))
    varying = [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
    return [
        ", ".join(f"{key}={job.overrides.get(key, '(default)')}" for key in varying) or "all runs"
        for job in jobs
    ]


def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def last_epoch_mean_over_layers(job: Job, prefix: str) -> float | None:
    finals = [job.series(tag)[-1] for tag in job.layer_tags(prefix)]
    return statistics.fmean(finals) if finals else None


def summarise(label: str, jobs: list[Job]) -> dict[str, Any]:
    """One summary row for the jobs of one configuration."""
    completed = [job for job in jobs if job.metrics.get("status") == "completed"]

    def completed_values(key: str) -> list[float]:
        return [job.metrics[key] for job in completed if job.metrics.get(key) is not None]

    def per_job(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return statistics.fmean(present) if present else None

    test_acc, test_acc_std = mean_and_std(completed_values("test/acc"))
    best_val_acc, best_val_acc_std = mean_and_std(completed_values("val/acc"))
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
        "final_train_loss": per_job([job.metrics.get("train/loss") for job in jobs]),
        # The median over training: one outlier step does not move it.
        "grad_norm_ratio": per_job(
            [
                statistics.median(job.series("grad_norm/first_to_last_ratio"))
                if job.series("grad_norm/first_to_last_ratio")
                else None
                for job in jobs
            ]
        ),
        "dead_fraction": per_job(
            [last_epoch_mean_over_layers(job, "activation/dead_fraction") for job in jobs]
        ),
        "saturated_fraction": per_job(
            [last_epoch_mean_over_layers(job, "activation/saturated_fraction") for job in jobs]
        ),
        "epochs": per_job([job.metrics.get("epochs") for job in jobs]),
        "train_seconds": per_job([job.metrics.get("train_seconds") for job in jobs]),
        "status": ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())),
    }


def format_cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if value is None:
        return "–"
    if column in ("test_acc", "best_val_acc"):
        return f"{value:.4f} ± {row[f'{column}_std']:.4f}"
    if column == "grad_norm_ratio":
        return f"{value:.2e}"
    if column in ("dead_fraction", "saturated_fraction"):
        return f"{value:.1%}"
    if column in ("epochs", "train_seconds"):
        return f"{value:.1f}"
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
    """Write summary.csv, summary.md and the plots into `sweep_dir`; return the rows."""
    from mlplab.report_plots import plot_sweep

    jobs = find_jobs(sweep_dir)
    groups: dict[str, list[Job]] = defaultdict(list)
    for label, job in zip(configuration_labels(jobs), jobs):
        groups[label].append(job)
    rows = [summarise(label, group) for label, group in groups.items()]
    with (sweep_dir / "summary.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "summary.md").write_text(markdown_table(rows))
    plot_sweep(groups, sweep_dir)
    return rows


class ReportAtSweepEnd(Callback):
    """Hydra callback: write the sweep report when a multirun ends, failed jobs included."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        write_report(Path(config.hydra.sweep.dir))
