"""`python -m train resume=<run folder>`: the command line that continues a run in its folder."""

from __future__ import annotations

from pathlib import Path

from mlplab.command_paths import hydra_quoted
from mlplab.errors import ConfigError
from mlplab.stored_config import read_run_config

# What a resumed run may change: how long it trains, where it runs and reads data, what it
# prints. Anything else would make it a different run than the one its checkpoint belongs to.
SAFE_OVERRIDES = (
    "trainer.max_epochs",
    "trainer.max_time",
    "trainer.accelerator",
    "data.root",
    "data.download",
    "callbacks.progress_bar.refresh_rate",
)


def saved_config(run_dir: Path) -> Path:
    """The config a run folder was trained with, checked as data (mlplab.stored_config);
    ConfigError if the folder is not a run or its config holds what conf/'s options cannot."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run folder (it has no .hydra/config.yaml): pass a folder "
            "that `python -m train` wrote, such as outputs/runs/<date>_<time>_<suffix>"
        )
    read_run_config(config)  # before Hydra composes it: it would instantiate what it names
    return config


def resume_arguments(arguments: list[str]) -> list[str]:
    """Turn `resume=<folder> [safe overrides]` into Hydra arguments that reload that run's config.

    Arguments without `resume=` come back unchanged.
    """
    folders = [
        argument.removeprefix("resume=") for argument in arguments if argument.startswith("resume=")
    ]
    if not folders:
        return arguments
    run_dir = Path(folders[-1]).expanduser().resolve()
    config = saved_config(run_dir)
    overrides = [argument for argument in arguments if not argument.startswith("resume=")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in SAFE_OVERRIDES:
            raise ConfigError(
                f"{override} cannot be used with resume: a resumed run keeps its saved config "
                f"and may only change {', '.join(SAFE_OVERRIDES)}; start a new run to change more"
            )
    return [
        f"--config-path={config.parent}",
        "--config-name=config",
        f"hydra.run.dir={hydra_quoted(str(run_dir))}",
        # The run's .hydra/ keeps the config and overrides it was started with (the sweep
        # report labels a job by them).
        "hydra.output_subdir=null",
        f"++resume={hydra_quoted(str(run_dir))}",
        *overrides,
    ]


def saved_choices(run_dir: Path) -> dict[str, str | None]:
    """The config group options a run folder was started with (from Hydra's .hydra/hydra.yaml)."""
    import yaml

    saved = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    return dict(saved["hydra"]["runtime"]["choices"])
