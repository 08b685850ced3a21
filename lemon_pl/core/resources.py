"""What this machine can still give a run: free memory, a folder that takes files, data flushed to
disk, byte counts written for people.

Used by every check that bounds the work a user's numbers would cause before anything is allocated
(``lemon-pl generate``'s solve and file estimates, ``lemon-pl predict``'s request estimate) and by
the up-front checks of output folders."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the kernel's MemAvailable (else free pages),
    lowered to a cgroup's remaining limit (v2 or v1); None when unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                text = fh.read().strip()
            if text == "max":
                continue
            with open(usage_file) as fh:
                left = int(text) - int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if 0 <= left < 2**60:
            avail = left if avail is None else min(avail, left)
    return avail


def cannot_write_in(folder: str | os.PathLike) -> str | None:
    """None if a file can be created in the existing ``folder``, else why not (``Read-only file
    system``, ``Permission denied``, ...). It creates and removes an empty probe file: permission
    bits alone say nothing for root, and a folder such as ``/proc`` passes ``os.access``."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".lemon-probe-", dir=os.fspath(folder))
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a closed file's data to disk (an ``OSError`` says why it could not be)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike, strict: bool = False) -> None:
    """Make renames in ``folder`` durable. Best effort: a folder that cannot be opened, or a file
    system that cannot sync a folder (EINVAL, ENOTSUP, EBADF), is skipped; with ``strict`` any other
    error of the sync (an I/O error) is raised."""
    import errno

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if strict and err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def format_bytes(n: float) -> str:
    """``512 B``, ``10 MiB``, ``156.2 GiB``: binary units, one decimal where it says something."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            break
        n /= 1024
    if unit == "B":
        return f"{n:.0f} B"
    return f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"


__all__ = ["available_memory", "cannot_write_in", "format_bytes", "fsync_dir", "fsync_path"]
