"""User-facing errors: each one is printed as a single line by the CLI, never as a traceback."""


class MemreproError(Exception):
    """Base of errors caused by the user's input (config, files, checkpoints)."""


class ConfigError(MemreproError):
    """A configuration value is invalid; the message names the field, the value and the rule."""


class DataError(MemreproError):
    """A data file is missing, truncated or corrupt; the message says where we looked and what to do."""


class CheckpointError(MemreproError):
    """A checkpoint cannot be read or does not match the configured model."""


class TrainingDiverged(MemreproError):
    """The loss or the gradients became NaN/Inf."""
