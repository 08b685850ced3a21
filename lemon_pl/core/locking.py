"""One exclusive lock per working folder, so that two lemon-pl processes never write into the
same files at once (``lemon-pl experiment`` on one ``--out``, ``lemon-pl multilevel plan`` on one
``--pilot-dir``).

:func:`hold_lock` takes an exclusive, non-blocking ``flock`` on a lock file and writes the
holder's pid into it; the lock lasts as long as the returned file object is open and is
released by the operating system when the process ends (even on ``SIGKILL``), so a killed run
never leaves a stale lock. A second process is refused at once with :class:`LockHeld`, which
carries the holder's pid for its one-line message.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import IO


class LockHeld(RuntimeError):
    """Another process holds the lock; ``holder`` is its pid as it wrote it (or ``unknown``)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.path, self.holder = path, holder


def hold_lock(path: str | os.PathLike) -> IO[bytes]:
    """An exclusive, non-blocking lock on ``path`` (created, with its folder, if missing).

    Returns the open lock file: close it to release the lock. Raises :class:`LockHeld` if
    another process (or another open of the same file in this one) holds it, and ``OSError`` if
    the lock file cannot be created. The pid is written unbuffered (a full disk leaves the file
    empty and the lock still held, and closing never fails)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b", buffering=0)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        try:
            holder = os.pread(fh.fileno(), 32, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        fh.close()
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockHeld(path, holder) from None
        raise
    try:  # who holds it, for the message of a second process (best effort)
        os.ftruncate(fh.fileno(), 0)
        os.pwrite(fh.fileno(), f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return fh


__all__ = ["LockHeld", "hold_lock"]
