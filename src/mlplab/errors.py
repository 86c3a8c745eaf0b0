"""Errors a user can act on, and the one place that turns them into a line and an exit status."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("mlplab")


class KnownError(Exception):
    """A failure whose message says what went wrong and what to do; no traceback is needed.

    `status` is what the run's metrics.json records; `exit_code` what the command exits with.
    """

    status = "failed"
    exit_code = 1


class ConfigError(KnownError, ValueError):
    """A config value or data file that cannot work; the message names the key and the fix."""

    exit_code = 2


class TrainingDiverged(KnownError, RuntimeError):
    """The training loss became NaN or infinite; the message says when and what to change."""

    status = "diverged"
    exit_code = 3


class RunInterrupted(KnownError, RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint it can be resumed from."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def one_line_errors(stop: bool = True) -> Iterator[None]:
    """Report a KnownError raised inside as `error: <message>` and exit with its status.

    With `stop=False` (a job of a sweep) the error is reported and the program goes on.
    """
    try:
        yield
    except KnownError as error:
        log.error(f"error: {error}")
        if stop:
            raise SystemExit(error.exit_code) from None
