"""A `python -m train` command line checked before Hydra starts anything or torch is imported.

The config of every job the command would run is composed (each job of a sweep over listed
values) and checked, so a mistake answers in one line with exit status 2 and leaves no run
folder behind. Hydra's own composition errors become the same kind of line.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser  # Hydra's own parser: hydra-core is bounded
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mlplab_course_sweeper.course_sweeper import CourseSweeper
from mlplab.config.checks import check_additions, check_config, check_plugins
from mlplab.config.presets import course_jobs, preset_names
from mlplab.errors import ConfigError

# Flags that print something instead of running: Hydra answers them itself.
NOT_A_RUN = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


def check_command_line(
    arguments: Sequence[str], app_dir: Path, config_path: str, config_name: str
) -> None:
    """Compose and check the config of each job of the command; ConfigError for the first bad one.

    `app_dir`, `config_path` and `config_name` are those of the app's `hydra.main`.
    """
    args = get_args_parser().parse_args(list(arguments))
    # --config-dir adds a folder of the user's own options: Hydra resolves those itself.
    if any(getattr(args, flag) for flag in NOT_A_RUN) or args.config_dir:
        return
    config_dir = (app_dir / (args.config_path or config_path)).resolve()
    config_name = args.config_name or config_name
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        jobs = ComposedConfigs(config_name)
        for overrides in job_overrides(config_name, args.overrides, args.multirun):
            cfg = jobs.config(overrides)
            check_config(cfg, overrides)
            check_additions(cfg, overrides)
        check_plugins(jobs.hydra)


class ComposedConfigs:
    """Each job's config without its hydra node, composed once per shape of the sweep.

    Jobs that differ only in plain values (seed=1 / seed=2) share their composition: the
    first is composed, the others are a copy of it with their values set, as Hydra sets
    values after composing. A job that differs in a config group, adds or deletes a key, or
    sets a dict, is composed in full.
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        self.parser = OverridesParser.create()
        self.groups = set(GlobalHydra.instance().config_loader().list_groups(""))
        self.composed: dict[tuple, DictConfig] = {}
        self.hydra: DictConfig | None = None  # the first job's hydra node (its launcher, ...)

    def config(self, overrides: list[str]) -> DictConfig:
        values = [o for o in parse(self.parser, overrides) if self.is_plain_value(o)]
        value_lines = {value.input_line for value in values}
        shape = (
            tuple(o for o in overrides if o not in value_lines),
            tuple(value.key_or_group for value in values),
        )
        if shape not in self.composed:
            with_hydra = composed(self.config_name, overrides)
            self.hydra = self.hydra or with_hydra.hydra
            keys = [key for key in with_hydra if key != "hydra"]
            self.composed[shape] = OmegaConf.masked_copy(with_hydra, keys)
            return copy.deepcopy(self.composed[shape])
        cfg = copy.deepcopy(self.composed[shape])
        for value in values:
            OmegaConf.update(cfg, value.key_or_group, value.value(), merge=True)
        return cfg

    def is_plain_value(self, override: Override) -> bool:
        """`key=value` for an existing key of the job's config: no group, no +, ~ or dict."""
        key = override.key_or_group
        return not (
            override.is_add()
            or override.is_force_add()
            or override.is_delete()
            or override.package is not None
            or "/" in key
            or key.split(".")[0] == "hydra"
            or ("." not in key and key in self.groups)
            or isinstance(override.value(), dict)
        )


def target_of(sweeper: type) -> str:
    return f"{sweeper.__module__}.{sweeper.__name__}"


def job_overrides(config_name: str, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The overrides of each job: one job for a single run, every combination for a sweep.

    The course's sweeper (hydra/sweeper=course) runs each of its presets' sweeps. A sweep whose
    sweeper is neither (Optuna's) picks its values as it goes:
    then only what all its jobs share is checked here, and each job checks its own values.
    """
    if not multirun:
        return [overrides]
    parser = OverridesParser.create()
    parsed = parse(parser, overrides)
    shared = [override.input_line for override in parsed if not override.is_sweep_override()]
    sweeper = composed(config_name, shared).hydra.sweeper
    from_config = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    if sweeper._target_ == target_of(CourseSweeper):
        presets = list(sweeper.presets or preset_names())
        return course_jobs(presets, parse(parser, [*from_config, *overrides]), parser)
    if sweeper._target_ != target_of(BasicSweeper):
        return [shared]
    batches = BasicSweeper.split_arguments(parse(parser, [*from_config, *overrides]), None)
    return [list(job) for batch in batches for job in batch]


def parse(parser: OverridesParser, overrides: list[str]):
    try:
        return parser.parse_overrides(overrides)
    except OverrideParseException as error:
        raise ConfigError(one_line(str(error))) from None


def composed(config_name: str, overrides: list[str]) -> DictConfig:
    """The job's config with its hydra node; Hydra's errors as a one-line ConfigError."""
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=True)
    except MissingConfigException as error:
        raise ConfigError(missing_option(error, overrides)) from None
    except ConfigCompositionException as error:
        raise ConfigError(composition_error(error, config_name, overrides)) from None
    except OverrideParseException as error:
        raise ConfigError(one_line(str(error))) from None


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def suggestion(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {close[0]}? " if close else ""


def missing_option(error: MissingConfigException, overrides: list[str]) -> str:
    """`activation=foo: foo is not an option of activation; did you mean ...? choose from ...`."""
    if not error.missing_cfg_file or "/" not in error.missing_cfg_file:
        return one_line(str(error))
    group, _, option = error.missing_cfg_file.rpartition("/")
    given = next((o for o in overrides if o.lstrip("+~").startswith(f"{group}=")), None)
    options = sorted(
        error.options or GlobalHydra.instance().config_loader().get_group_options(group)
    )
    return (
        f"{given or f'{group}={option}'}: {option} is not an option of {group}; "
        f"{suggestion(option, options)}choose from {', '.join(options)}"
    )


def composition_error(
    error: ConfigCompositionException, config_name: str, overrides: list[str]
) -> str:
    """An unknown key with the keys that exist beside it; other errors on one line."""
    message = str(error)
    if message.startswith("Could not append to config. An item is already at"):
        key = message.split("'")[1]
        return f"+{key}: {key} exists already, so it is set without the +: {key}=<value>"
    if not message.startswith("Could not override '"):
        return one_line(message)
    key = message.split("'")[1]
    given = next(o for o in overrides if o.split("=", 1)[0] == key)
    parent, _, name = key.rpartition(".")
    others = [o for o in overrides if o != given]
    return unknown_key(given, parent, name, lambda: composed(config_name, others))


def unknown_key(given: str, parent: str, name: str, config: Callable[[], DictConfig]) -> str:
    node = OmegaConf.select(config(), parent) if parent else config()
    keys = [key for key in node if not str(key).startswith("_") and key != "hydra"]
    return (
        f"{given}: {parent or 'the config'} has no key {name}; {suggestion(name, keys)}"
        f"its keys: {', '.join(map(str, keys))} (a key that a class accepts but the config "
        f"does not list is added with +{parent + '.' if parent else ''}{name}=...)"
    )
