"""Paths on a Hydra command line taken as they are: a sweep job's folder name holds `=` and `,`,
which Hydra's override grammar would otherwise read as syntax."""

from __future__ import annotations

from collections.abc import Sequence


def hydra_quoted(value: str) -> str:
    """`value` as a quoted Hydra override value, so `=` and `,` in folder names survive."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def paths_as_given(arguments: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The command line with each `key=<path>` of `keys` quoted for Hydra; others unchanged."""
    quoted = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals and key.lstrip("+") in keys:
            argument = f"{key}={hydra_quoted(value)}"
        quoted.append(argument)
    return quoted
