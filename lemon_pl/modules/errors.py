"""Errors that the CLI reports as one clear line."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the configured network."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""
