"""Errors a user can act on, and the one place that turns them into a line and an exit status."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("mlplab")


class KnownError(Exception):
    """A failure whose message says what went wrong and what to do; no traceback is needed.

    `status` is what the run's metrics.json records; `exit_code` what the command exits with;
    `resumable` errors leave a checkpoint that `resume=` continues from; `stops_sweep` ones
    stop a sweep's other jobs too.
    """

    status = "failed"
    exit_code = 1
    resumable = False
    stops_sweep = False


class ConfigError(KnownError, ValueError):
    """A config value or data file that cannot work; the message names the key and the fix."""

    exit_code = 2


class TrainingDiverged(KnownError, RuntimeError):
    """The training loss became NaN or infinite; the message says when and what to change."""

    status = "diverged"
    exit_code = 3


class WriteFailed(KnownError, OSError):
    """A file of the run could not be written: the disk is full, over quota or read-only."""

    exit_code = 4
    resumable = True


class RunInterrupted(KnownError, RuntimeError):
    """A signal stopped the run after saving a checkpoint it can be resumed from.

    Ctrl-C or a cluster's SIGTERM is meant for the whole command: a sweep stops too.
    """

    resumable = True
    stops_sweep = True

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def one_line_errors(stop: bool = True) -> Iterator[None]:
    """Report a KnownError raised inside as `error: <message>` and exit with its status.

    With `stop=False` (a job of a sweep) the error is reported and the program goes on, unless
    the error stops a sweep too.
    """
    try:
        yield
    except KnownError as error:
        log.error(f"error: {error}")
        if stop or error.stops_sweep:
            raise SystemExit(error.exit_code) from None
