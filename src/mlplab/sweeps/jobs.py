"""The jobs of a sweep folder as the report reads them: overrides, metrics.json and curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import mlplab.results as results
from mlplab.errors import ConfigError
from mlplab.record.curves import read_curves


@dataclass
class JobFolder:
    """One run of the sweep: its command-line overrides, metrics.json and curves."""

    folder: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def series(self, tag: str) -> list[float]:
        return [value for _, value in self.scalars.get(tag, [])]

    def layer_tags(self, prefix: str) -> list[str]:
        """Tags `prefix/layer_1`, `prefix/layer_2`, ... present in this job, in layer order."""
        tags = [tag for tag in self.scalars if tag.startswith(results.layer_tag(prefix, ""))]
        return sorted(tags, key=results.layer_number)

    def seconds(self) -> float | None:
        """Training time, pre-training included; None where the run did not record it."""
        return self._with_pretraining(results.TRAIN_SECONDS, results.PRETRAIN_SECONDS)

    def flops(self) -> int | None:
        """Training's floating-point operations, pre-training included; None where unrecorded."""
        return self._with_pretraining(results.TRAIN_FLOPS, results.PRETRAIN_FLOPS)

    def _with_pretraining(self, key: str, pretraining_key: str) -> float | None:
        if self.metrics.get(key) is None:
            return None
        return self.metrics[key] + self.metrics.get(pretraining_key, 0)


def read_overrides(folder: Path) -> dict[str, str]:
    lines = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (line.lstrip("+~").split("=", 1) for line in lines if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("hydra.")}


def read_job(folder: Path) -> JobFolder:
    metrics = results.read_metrics(folder) or {
        "status": "unfinished",
        "error": f"no {results.METRICS_FILE}: the job stopped early",
    }
    return JobFolder(folder, read_overrides(folder), metrics, read_curves(folder))


def holds_jobs(folder: Path) -> bool:
    return any(folder.glob("*/.hydra/overrides.yaml"))


def sweep_folders(sweep_dir: Path) -> list[Path]:
    """The folders of a sweep that hold its jobs: the sweep's own, or, for a sweep of several
    presets (hydra/sweeper=course), each preset's folder in it."""
    if holds_jobs(sweep_dir) or not sweep_dir.is_dir():
        return [sweep_dir]
    return sorted(folder for folder in sweep_dir.iterdir() if holds_jobs(folder)) or [sweep_dir]


def find_jobs(sweep_dir: Path) -> list[JobFolder]:
    """The jobs of a sweep folder, in the order of their folder names."""
    folders = [path.parent.parent for path in sweep_dir.glob("*/.hydra/overrides.yaml")]
    if not folders:
        raise ConfigError(
            f"{sweep_dir} holds no runs (no */.hydra/overrides.yaml): give a sweep folder, "
            "such as outputs/sweeps/<date>_<time>_<suffix>"
        )
    return [read_job(folder) for folder in sorted(folders, key=lambda path: path.name)]
