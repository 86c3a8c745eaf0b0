"""What a job knows besides its config: where it stands among the jobs of its command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JobFacts:
    """What a job knows besides its config: where it stands among the jobs of its command."""

    number: int = 0  # the job's number in its sweep (0 for a single run)
    in_sweep: bool = False  # a job of a multirun: a failure is recorded and the sweep goes on
    jobs_at_once: int = 1  # how many jobs the launcher runs side by side on this machine
    overrides: tuple[str, ...] = ()  # the job's command-line overrides
    command: list[str] | None = None  # re-runs this job alone (for the processes of DDP)
    choices: Mapping[str, str | None] = field(default_factory=dict)  # config group -> option
