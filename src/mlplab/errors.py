"""Errors a user can fix by changing the config or the data; reported as one line, no traceback."""


class ConfigError(ValueError):
    """A config value or data file that cannot work; the message names the key and the fix."""
