"""One job of `python -m train`: train it unless it has finished, and record its outcome."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlplab.engines.single.train import fit_and_test
from mlplab.job.facts import JobFacts
from mlplab.job.outcome import record_outcome
from mlplab.safety.resume import finished_metrics

log = logging.getLogger(__name__)


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
