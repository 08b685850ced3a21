"""Errors that the CLI reports as one ``lemon-pl: error: ...`` line (exit code 2)."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the configured network, or is not a usable checkpoint."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class CheckpointWriteError(OSError):
    """A checkpoint (or another atomically written file) could not be written; the previous
    version of the file, if any, is intact."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (a ``KeyError``'s without its quotes; else its type)."""
    msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(msg.split()) or type(err).__name__
