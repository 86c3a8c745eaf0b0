"""The search space, written in Hydra's override grammar, as Optuna's distributions.

`hydra.sweeper.params` (and sweeps on the command line) name each searched key with
`choice(...)`, `range(start, stop, step)` or `interval(low, high)`, `tag(log, ...)` for a log
scale; any other value is the same in every trial.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from mlplab.errors import ConfigError


def parsed(params: dict[str, Any], arguments: list[str]) -> list[Override]:
    """`params` (key: override value) and the command line's `arguments`, parsed; an argument
    overrides the param of its key."""
    lines = {key: f"{key}={value}" for key, value in params.items()}
    for argument in arguments:
        lines[argument.split("=", 1)[0]] = argument
    return OverridesParser.create().parse_overrides(list(lines.values()))


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Each searched key's Optuna distribution, and the overrides every trial shares."""
    space, fixed = {}, []
    for override in parsed(params, arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(key, override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def distribution(key: str, override: Override):
    import optuna.distributions as d

    value = override.value()
    log = "log" in value.tags
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution([as_choice(choice) for choice in value.list])
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if all(isinstance(bound, int) for bound in (low, high)):
            return d.IntDistribution(low, high, log=log)
        return d.FloatDistribution(float(low), float(high), log=log)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{key}: range({value.start}, {value.stop}, {value.step}) is empty")
        if all(isinstance(v, int) for v in values):
            return d.IntDistribution(values[0], values[-1], step=value.step, log=log)
        return d.FloatDistribution(values[0], values[-1], step=value.step, log=log)
    raise ConfigError(
        f"{key}={override.get_value_element_as_str()}: search with choice(...), range(...) or "
        "interval(...)"
    )


def as_choice(choice: Any) -> str:
    """A choice as the study stores it: its override text (relu, 0.5, [256,256])."""
    return Override._get_value_element_as_str(choice)


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's values (Optuna's params: numbers, and choices as override text) as
    overrides of the job's config."""
    return [f"{key}={value}" for key, value in params.items()]


def grid(space: dict[str, Any]) -> dict[str, list]:
    """The values of each key for the grid sampler, which needs every key a choice or range."""
    import optuna.distributions as d

    values = {}
    for key, distribution in space.items():
        if isinstance(distribution, d.CategoricalDistribution):
            values[key] = list(distribution.choices)
        elif distribution.step is not None:
            count = round((distribution.high - distribution.low) / distribution.step) + 1
            values[key] = [distribution.low + i * distribution.step for i in range(count)]
        else:
            raise ConfigError(
                f"hydra.sweeper.params.{key} is an interval: the grid sampler needs choice(...) "
                "or range(...) for every key"
            )
    return values
