"""The course's presets, conf/experiment/: their names, descriptions, own sweeps, and the jobs
of several presets swept as one (hydra/sweeper=course)."""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from mlplab.config.compose import CONF
from mlplab.errors import ConfigError

PRESETS = CONF / "experiment"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


def preset_file(preset: str) -> Path:
    """The preset's yaml file; ConfigError naming the presets there are if it has none."""
    path = PRESETS / f"{preset}.yaml"
    if not path.exists():
        raise ConfigError(f"no preset {preset!r}; choose from {', '.join(preset_names())}")
    return path


def description(preset: str) -> str:
    """The preset's header comment: what it trains and what the course printed."""
    lines = preset_file(preset).read_text().splitlines()
    comment = [line[1:].strip() for line in lines if line.startswith("#")]
    return " ".join(line for line in comment if line and not line.startswith("@package"))


def preset_sweep(preset: str) -> dict[str, str]:
    """The preset's own sweep, its hydra.sweeper.params: key -> values, as overrides write them."""
    params = OmegaConf.select(OmegaConf.load(preset_file(preset)), "hydra.sweeper.params") or {}
    return {str(key): str(values) for key, values in params.items()}


# A job's folder in a sweep of several presets: its preset's, then as any sweep names its jobs
# (conf/train.yaml).
JOB_SUBDIR = "{preset}/${{hydra.job.num}}_${{hydra.job.override_dirname}}"


def course_jobs(
    presets: list[str], overrides: list[Override], parser: OverridesParser
) -> list[list[str]]:
    """The overrides of each job of the presets' sweeps, preset after preset: each preset's own
    sweep with `overrides` in place of its own for the same key, its jobs in its folder."""
    given = {override.get_key_element(): override.input_line for override in overrides}
    jobs = []
    for preset in presets:
        own = {key: f"{key}={values}" for key, values in preset_sweep(preset).items()}
        lines = {
            **own,
            **given,
            "experiment": f"experiment={preset}",
            "hydra.sweep.subdir": f"hydra.sweep.subdir={JOB_SUBDIR.format(preset=preset)}",
        }
        batches = BasicSweeper.split_arguments(parser.parse_overrides(list(lines.values())), None)
        jobs += [list(job) for job in batches[0]]
    return jobs
