"""Errors that the CLI reports as one ``lemon-pl: error: ...`` line (exit code 2)."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the configured network, or is not a usable checkpoint."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class CheckpointWriteError(OSError):
    """A checkpoint (or another atomically written file) could not be written; the previous
    version of the file, if any, is intact."""
