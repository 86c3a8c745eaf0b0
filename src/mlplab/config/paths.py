"""Paths on a Hydra command line taken as they are: a sweep job's folder name holds `=` and `,`,
which Hydra's override grammar would otherwise read as syntax."""

from __future__ import annotations

from collections.abc import Sequence


def hydra_quoted(value: str) -> str:
    """`value` as a quoted Hydra override value, so `=` and `,` in folder names survive."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def paths_as_given(arguments: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The command line with each `key=<path>` of `keys` quoted for Hydra; others unchanged.

    `null` stays Hydra's null, and a value the user quoted already stays as it is.
    """
    quoted = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals and key.lstrip("+") in keys and value != "null" and not is_quoted(value):
            argument = f"{key}={hydra_quoted(value)}"
        quoted.append(argument)
    return quoted


def is_quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
