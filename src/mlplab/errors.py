"""Errors a user can fix by changing the config or the data; reported as one line, no traceback."""


class ConfigError(ValueError):
    """A config value or data file that cannot work; the message names the key and the fix."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message says when and what to change."""


class RunInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint it can be resumed from."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
