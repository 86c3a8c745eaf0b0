"""`hydra/sweeper=course`: the course's presets as one sweep, so jobs of different presets pack.

Each preset of conf/experiment/ is a sweep of its own (`experiment=<preset>` with the
preset's `hydra.sweeper.params`); this sweeper expands every preset's sweep, with the command
line's overrides taking the place of a preset's own for the same key, and hands all their jobs
to the launcher as one batch. The packed launcher then trains together the jobs of different
presets that can share a stacked network (two presets of one architecture and optimiser, say),
and the sweep starts once. Each preset's jobs go into a folder of the sweep named after it,
where the sweep report writes that preset's table and plots.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override


class CourseSweeper(BasicSweeper):
    def __init__(
        self,
        presets: list[str] | None = None,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        """`presets`: the presets to sweep (None or empty: every preset of conf/experiment/);
        `max_batch_size` and `params` as Hydra's basic sweeper's, for every preset."""
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.presets = list(presets or [])

    def split_arguments(
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """Every preset's jobs, in the order of `presets`, in batches of max_batch_size (one
        batch by default); `overrides` (the command line's and `params`) apply to each."""
        from mlplab.config.presets import course_jobs, preset_names

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = course_jobs(self.presets or preset_names(), overrides, parser)
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))
