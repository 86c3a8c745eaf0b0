"""curves.csv: every scalar a run logs, one `step,tag,value` row each.

The run writes it whatever trackers it uses, or none; the sweep report reads it. Rows are
appended as the run logs them, so a stopped run keeps the points it reached.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from mlplab.results import CURVES_FILE

HEADER = ["step", "tag", "value"]


class CurveFile(Logger):
    """A Lightning logger that appends each logged scalar to `<folder>/curves.csv`.

    A resumed run passes `resumed_step`: the points the stopped run wrote from that step on
    are dropped, so the curves go on from its checkpoint without an overlapping stretch.
    """

    def __init__(self, folder: Path, resumed_step: int | None = None) -> None:
        super().__init__()
        self.path = Path(folder) / CURVES_FILE
        self.pending: list[tuple[int, str, float]] = []
        if resumed_step is not None:
            keep_points_before(self.path, resumed_step)

    @property
    def name(self) -> str:
        return "curves"

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters belong to the trackers and the run's .hydra/ folder, not to curves."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.pending.extend((step or 0, tag, float(value)) for tag, value in metrics.items())

    @rank_zero_only
    def save(self) -> None:
        if not self.pending:
            return
        new_file = not self.path.exists()
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            if new_file:
                writer.writerow(HEADER)
            writer.writerows(self.pending)
        self.pending = []

    def finalize(self, status: str) -> None:
        self.save()


@rank_zero_only
def keep_points_before(path: Path, step: int) -> None:
    """Rewrite the curve file at `path` without its rows at `step` or later."""
    if not path.exists():
        return
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if int(row["step"]) < step]
    partial = path.with_name(f".{path.name}.partial")  # the old file stays whole until replaced
    with partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def read_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from `<folder>/curves.csv`, in the order logged; {} if none."""
    path = folder / CURVES_FILE
    if not path.exists():
        return {}
    curves: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            curves.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return curves
