"""`python -m train resume=<run folder>`: the command line that continues a run in its folder."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mlplab.config.compose import CONF
from mlplab.config.paths import hydra_quoted
from mlplab.config.stored import moved_targets, read_run_config
from mlplab.errors import ConfigError
from mlplab.results import LAST_CHECKPOINT, read_metrics

log = logging.getLogger(__name__)

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


def saved_config(run_dir: Path) -> tuple[Path, dict]:
    """The config a run folder was trained with: its path and its contents, checked as data
    (mlplab.config.stored); ConfigError if the folder is not a run or its config holds what
    conf/'s options cannot."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run folder (it has no .hydra/config.yaml): pass a folder "
            "that `python -m train` wrote, such as outputs/runs/<date>_<time>_<suffix>"
        )
    # Read before Hydra composes it: Hydra would instantiate what it names.
    return config, read_run_config(config)


def checkpoint_to_continue(cfg: DictConfig, in_sweep: bool) -> Path | None:
    """The last.ckpt a job continues from, None for a fresh start.

    A `resume=` run continues from its last.ckpt, and so does a job of a sweep that finds one
    in its folder: a job its cluster requeued after pre-empting it (sweep folders are new for
    every sweep, so an earlier attempt of the same job is the only thing that leaves one).
    """
    if not (cfg.get("resume") or in_sweep):
        return None
    checkpoint = Path(cfg.checkpoint_dir) / LAST_CHECKPOINT
    if not checkpoint.exists():
        if cfg.get("resume"):
            log.info(f"{checkpoint} does not exist yet: training this run from the start")
        return None
    return checkpoint


def finished_metrics(run_dir: Path, max_epochs: int | None) -> dict | None:
    """The run's metrics when it completed `max_epochs` epochs or more already, else None."""
    try:
        metrics = read_metrics(run_dir)
    except ValueError:  # a damaged metrics.json: the run trains and writes a new one
        return None
    if not metrics or metrics.get("status") != "completed" or max_epochs is None:
        return None
    epochs = metrics.get("epochs")
    return metrics if isinstance(epochs, int) and epochs >= max_epochs else None


def requested_epochs(overrides: list[str], saved: dict) -> int | None:
    """trainer.max_epochs as a resumed run would get it: from the overrides, else its config."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("trainer.max_epochs=")]
    try:
        return int(given[-1] if given else saved["trainer"]["max_epochs"])
    except (TypeError, KeyError, ValueError):
        return None  # the config checks name what is wrong with it


def check_something_left_to_train(run_dir: Path, overrides: list[str], saved: dict) -> None:
    """Refuse to resume a finished run that would train no further: its results stay as they are."""
    epochs = requested_epochs(overrides, saved)
    metrics = finished_metrics(run_dir, epochs)
    if metrics is not None:
        raise ConfigError(
            f"{run_dir} has finished: it trained {metrics['epochs']} epochs and "
            f"trainer.max_epochs={epochs} asks for no more, so it is left as it is; add "
            f"trainer.max_epochs=<more than {metrics['epochs']}> to train it further"
        )


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
    config, saved = saved_config(run_dir)
    overrides = [argument for argument in arguments if not argument.startswith("resume=")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in SAFE_OVERRIDES:
            raise ConfigError(
                f"{override} cannot be used with resume: a resumed run keeps its saved config "
                f"and may only change {', '.join(SAFE_OVERRIDES)}; start a new run to change more"
            )
    check_something_left_to_train(run_dir, overrides, saved)
    return [
        f"--config-path={config.parent}",
        "--config-name=config",
        f"hydra.run.dir={hydra_quoted(str(run_dir))}",
        # The run's .hydra/ keeps the config and overrides it was started with (the sweep
        # report labels a job by them).
        "hydra.output_subdir=null",
        f"++resume={hydra_quoted(str(run_dir))}",
        # The console of a fresh run: mlplab's log format, from mlplab's conf/.
        f"hydra.searchpath=[{hydra_quoted(f'file://{CONF}')}]",
        "hydra/job_logging=mlplab",
        # A class an earlier mlplab stored under another module path, named where it is now.
        *(f"++{key}._target_={target}" for key, target in moved_targets(saved).items()),
        *overrides,
    ]


def saved_choices(run_dir: Path) -> dict[str, str | None]:
    """The config group options a run folder was started with (from Hydra's .hydra/hydra.yaml)."""
    import yaml

    saved = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    return dict(saved["hydra"]["runtime"]["choices"])
