"""The one HDF5 store of generated data: how a data file is written so that nothing is lost and
nothing half-written looks complete. Both writers use it, the operator families'
(:mod:`lemon_pl.data.generate`) and the map families' (:mod:`lemon_pl.multilevel.generate`).

A file ``ROOT/<family>/<split>.h5`` (:func:`file_path`) is written under ``<split>.h5.partial``
(:func:`partial_path`) by one run at a time and only renamed once complete and verified:

1. **lock** (:func:`acquire_locks` / :func:`release_locks`): an exclusive, non-blocking ``flock``
   of ``ROOT/<family>/.<split>.lock`` (:func:`lock_path`) for every file of the run, taken before
   any data file is looked at; a second run stops with one line naming the file and the pid;
2. **write** (:func:`guarded_write`): the writer's own function fills the ``.partial`` (files opened
   through :func:`lemon_pl.data.io.open_for_writing`, so a failed write raises where it happens); any
   OS or HDF5 write error - a full disk above all - becomes one :class:`GenerationError` line
   (:func:`write_error_message`) naming the ``.partial``, which the same command resumes
   (:func:`reopen_partial` verifies what a partial already holds and keeps it);
3. **verify, rename, sync** (:func:`finish_partial`): the file is closed, fsynced, read back in full
   (:func:`verify_written`: every unit marked done has its data and CRC-32) and only then renamed to
   ``<split>.h5``, and the folder is fsynced, so a file with the final name is always complete.

Before anything is written: :func:`check_root_writable` / :func:`prepare_root` (one line for a root
that is a file, read-only or on a full disk) and :func:`check_disk_space` with
:func:`bytes_to_write` (the space the files still need, less what their partials hold).
:func:`same_identity` compares a file's identity attributes with what a run wants.

A *spec* here is anything with ``family`` and ``split`` attributes (and whatever the writer's own
size estimate reads). Errors are :class:`GenerationError`, whose message is the one line to print.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lemon_pl.core.resources import cannot_write_in, format_bytes, fsync_dir, fsync_path
from lemon_pl.data.io import CHECKSUM, describe_problems, open_for_writing, verify_operators


class GenerationError(RuntimeError):
    """Data generation cannot proceed (bad arguments, unwritable root, a failed write, a failing solve);
    the message is one line for the user."""


def file_path(root: str | os.PathLike, spec) -> Path:
    """``ROOT/<family>/<split>.h5``: where the complete file of ``spec`` lives."""
    return Path(root) / spec.family / f"{spec.split}.h5"


def partial_path(path: Path) -> Path:
    """``<split>.h5.partial``: where the file at ``path`` is written until it is complete."""
    return path.with_name(path.name + ".partial")


@dataclass
class SplitReport:
    """What a writer did to one file."""

    path: str
    status: str  # written | resumed | repaired | skipped
    n_operators: int
    k: int
    rejected: int
    shared_params: int
    seconds: float


def prepare_root(root: Path) -> None:
    """Create the data root ``root`` (one line if it is a file, cannot be made or is not writable)."""
    if root.exists() and not root.is_dir():
        raise GenerationError(f"--root {str(root)!r} is a file, not a folder; give another --root")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_enospc(err):
            raise GenerationError(f"cannot create data root {str(root)!r}: no space left on device "
                                  "(the disk is full)") from None
        raise GenerationError(f"cannot create data root {str(root)!r}: {err.strerror or first_line(err)}") from None
    why = cannot_write_in(root)
    if why is not None:
        raise GenerationError(f"data root {str(root)!r} is not writable ({why})")


def check_root_writable(root: str | os.PathLike) -> None:
    """Raise one line if ``root`` cannot become a writable data folder, without creating anything:
    empty, a file, under a file, or its nearest existing folder read-only / not writable."""
    if str(root).strip() == "":
        raise GenerationError("--root is empty; give the data folder, e.g. --root data")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise GenerationError(f"--root {str(root)!r} is a file, not a folder; give another --root")
    base = existing_ancestor(root)
    if not base.is_dir():
        raise GenerationError(f"cannot create data root {str(root)!r}: {str(base)!r} is a file, not a folder")
    why = cannot_write_in(base)
    if why is not None:
        if base == Path(os.path.abspath(root)):
            raise GenerationError(f"data root {str(root)!r} is not writable ({why})")
        raise GenerationError(f"cannot create data root {str(root)!r}: folder {str(base)!r} is not writable ({why})")


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder a new root would be made in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def bytes_to_write(root: str | os.PathLike, specs: Sequence, size: Callable[[object], int],
                   overwrite: bool = False) -> int:
    """Disk space the run still needs: a complete file of every spec whose ``<split>.h5`` is not there
    (or is replaced), less what its ``.partial`` already holds. Existing files count as complete.
    ``size``: a complete file's size estimate from its spec (each writer has its own)."""
    root = Path(root)
    need = 0
    for spec in specs:
        path = file_path(root, spec)
        if path.exists() and not overwrite:
            continue
        partial = partial_path(path)
        have = partial.stat().st_size if partial.is_file() and not overwrite else 0
        need += max(size(spec) - have, 0)
    return need


def check_disk_space(roots: Sequence[str | os.PathLike], need: int,
                     lower: str = "--n-operators, --k, --nt or --nx") -> None:
    """Refuse, in one line naming ``--root``, ``need`` bytes of files that do not fit the free space of
    the disk holding ``roots`` (one root per level; their common folder is the ``--root``)."""
    paths = [str(r) for r in roots]
    root = Path(paths[0] if len(paths) == 1 else os.path.commonpath(paths))
    base = existing_ancestor(root)
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        return
    if need > free:
        raise GenerationError(
            f"--root {str(root)!r}: the files need about {format_bytes(need)} but {format_bytes(free)} is free "
            f"on its disk ({base}); free some space, lower {lower}, use another --root, "
            "or pass --skip-space-check where the file system compresses")


def lock_path(root: Path, spec) -> Path:
    """``ROOT/<family>/.<split>.lock``: the file whose ``flock`` guards ``spec``'s data file."""
    return root / spec.family / f".{spec.split}.lock"


def acquire_locks(root: Path, specs: Sequence) -> list[int]:
    """Exclusive, non-blocking ``flock`` of every file's lock file; raises if another run holds one."""
    import fcntl

    fds: list[int] = []
    try:
        for spec in specs:
            lock = lock_path(root, spec)
            try:
                lock.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise GenerationError(write_error_message(err, lock)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                try:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                finally:
                    os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    partial = partial_path(file_path(root, spec))
                    raise GenerationError(f"another lemon-pl generate is writing {partial} (pid {holder}); "
                                          "wait for it or use another --root") from None
                raise GenerationError(f"cannot lock {lock}: {err.strerror or err}") from None
            fds.append(fd)
            try:  # who holds it, for the message of a second run (best effort)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass
    except BaseException:
        release_locks(fds)
        raise
    return fds


def release_locks(fds: Sequence[int]) -> None:
    """Release the locks :func:`acquire_locks` took."""
    for fd in fds:
        try:
            os.close(fd)  # closing the descriptor releases its flock
        except OSError:
            pass


def is_enospc(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full (ENOSPC, or HDF5's text of it)."""
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)


def write_error_message(err: BaseException, path: Path) -> str:
    """One line for a failed write of ``path``: ``no space left on device while writing PATH`` for a
    full disk (also as h5py's ``RuntimeError`` with ``errno = 28``), else the reason; either way the
    same command resumes."""
    text = " ".join(str(err).split())
    if is_enospc(err) or "errno = 28" in text:
        return (f"no space left on device while writing {path}; free some space and run the same command "
                "again to resume")
    reason = getattr(err, "strerror", None) or text or type(err).__name__  # h5py raises some as RuntimeError
    return f"cannot write {path}: {reason}; run the same command again to resume"


def first_line(err: BaseException) -> str:
    """The first line of an error's text (its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def guarded_write(partial: Path, resuming: bool, write: Callable[[], SplitReport],
                  again: Callable[[], SplitReport]) -> SplitReport:
    """Run ``write`` (which fills ``partial`` and renames it into place, :func:`finish_partial`) so
    that a failed write - a full disk, an I/O error, also one h5py could only report while freeing
    an object - is one :class:`GenerationError` line naming ``partial`` (which the same command
    resumes), with HDF5's own error output kept off stderr (:func:`quiet_hdf5`). A resumed
    ``partial`` that verified but HDF5 can no longer write to (e.g. "addr overflow": its file-space
    records left inconsistent by an earlier failed write) is started over once, through ``again``,
    with one warning line. Used by every HDF5 writer (operator and map families)."""
    ignored: list[BaseException] = []
    try:
        with quiet_hdf5() as ignored:
            return write()
    except GenerationError:
        # e.g. "failed verification after writing": name the cause h5py could only report in a close
        failed = [e for e in ignored if is_write_failure(e)]
        if failed:
            raise GenerationError(write_error_message(failed[0], partial)) from None
        raise
    except (OSError, RuntimeError) as err:
        if not (isinstance(err, OSError) or is_write_failure(err)):
            raise
        if resuming and getattr(err, "errno", None) is None and not is_write_failure(err) and partial.exists():
            print(f"warning: {partial} cannot be written to ({first_line(err)}); generating it again from the start",
                  file=sys.stderr)
            try:
                partial.unlink()
            except OSError as unlink_err:
                raise GenerationError(write_error_message(unlink_err, partial)) from None
            return again()
        raise GenerationError(write_error_message(err, partial)) from None


def finish_partial(f, partial: Path, path: Path, units: str = "operators") -> None:
    """Close the written file ``f`` of ``partial``, sync it, read it back in full and only then rename
    it to ``path`` (a file named ``path`` is always complete and verified) and sync the folder.
    ``units``: what a re-run regenerates when the read-back fails (operators, chunks)."""
    f.close()
    fsync_path(partial)
    problems = verify_written(partial)
    if problems:
        raise GenerationError(f"{partial} failed verification after writing ({problems}); it was not renamed; "
                              f"run the same command again to regenerate the damaged {units}")
    os.replace(partial, path)
    fsync_dir(path.parent)


def is_write_failure(err: BaseException) -> bool:
    """An HDF5 error (h5py raises some as ``RuntimeError``) caused by a failed write: a full disk,
    an I/O error."""
    text = str(err)
    return is_enospc(err) or "write failed" in text or "errno = " in text


@contextlib.contextmanager
def quiet_hdf5():
    """Around HDF5 writes: HDF5's own error stack (``HDF5-DIAG``) is not printed, and an error h5py
    can only report while freeing an object ("Exception ignored in ... __dealloc__", a traceback
    on stderr) is collected into the yielded list instead of printed: a failed write the caller
    names when the file then fails verification. (:func:`lemon_pl.data.io.open_for_writing` keeps
    such writes from happening in the first place.)"""
    ignored: list[BaseException] = []
    try:
        from h5py import _errors

        _errors.silence_errors()  # h5py does this at import; again in case something turned it on
    except Exception:  # noqa: BLE001 - a private module: best effort
        pass
    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.exc_value is not None and "h5py" in repr(unraisable.object):
            ignored.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield ignored
    finally:
        sys.unraisablehook = previous


def verify_written(path: Path) -> str:
    """'' if the closed file at ``path`` reads back complete (marked so, every unit verified by
    :func:`lemon_pl.data.io.verify_operators`), else a description of the first problem."""
    import h5py

    with h5py.File(path, "r") as f:
        if not bool(f.attrs.get("complete", False)):
            return "not marked complete"
        bad = verify_operators(f)
    return describe_problems(bad) if bad else ""


def close_quietly(f) -> None:
    """Close ``f`` while another error is on its way (its own close error is dropped)."""
    try:
        f.close()
    except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
        pass


def same_identity(attrs: dict, ident: dict, defaults: dict | None = None) -> bool:
    """Whether a file's attributes ``attrs`` hold every identity value of ``ident`` (floats to
    ``np.isclose``, the rest as text); a key missing from ``attrs`` counts as ``defaults[key]``
    (what files written before that key existed meant)."""
    defaults = defaults or {}
    for key, val in ident.items():
        got = attrs.get(key, defaults.get(key))
        if isinstance(got, bytes):
            got = got.decode()
        if isinstance(val, float):
            if got is None or not np.isclose(float(got), val):
                return False
        elif str(got) != str(val):
            return False
    return True


def reopen_partial(path: Path, belongs: Callable[[object, np.ndarray], bool], warn: bool = False):
    """Re-open the partial file ``path`` for writing if it is worth resuming, else None (start over).

    ``belongs(f, done)`` says whether the open file ``f`` (with ``op_done`` read as ``done``) is the
    writer's (identity, shapes). It must also hold ``u_crc32`` and at least one finished unit: a
    partial with none is started over (nothing to keep, and a first write that did not fit a full
    disk can leave HDF5's file-space records inconsistent: "addr overflow" on the next write).
    Finished units are verified (on disk, fletcher32, CRC-32); those that fail are marked undone
    (with one warning line if ``warn``), and a damaged complete file being repaired is marked
    incomplete. Reading is guarded (anything unreadable: start over); the writes that follow are
    not (a full disk must not make a resumable file look worthless)."""
    try:
        f = open_for_writing(path, "r+")
    except Exception:  # noqa: BLE001 - corrupt, truncated or foreign partial file: start over
        return None
    try:
        done = f["op_done"][:]
        ok = bool(belongs(f, done)) and CHECKSUM in f and bool(done.any())
        bad = verify_operators(f, np.flatnonzero(done)) if ok else []
    except Exception:  # noqa: BLE001 - unreadable metadata: start over
        ok = False
    if not ok:
        close_quietly(f)
        return None
    if bad and warn:
        print(f"warning: {path} {describe_problems(bad)}; generating again", file=sys.stderr)
    try:
        if bad:
            for i, _ in bad:
                done[i] = False
            f["op_done"][:] = done
        if f.attrs.get("complete", False):
            f.attrs["complete"] = False
        f.flush()
    except BaseException:
        close_quietly(f)
        raise
    return f


__all__ = ["GenerationError", "SplitReport", "file_path", "partial_path", "lock_path", "acquire_locks", "release_locks",
           "prepare_root", "check_root_writable", "existing_ancestor", "bytes_to_write", "check_disk_space",
           "guarded_write", "finish_partial", "verify_written", "reopen_partial", "same_identity", "close_quietly",
           "quiet_hdf5", "is_write_failure", "is_enospc", "write_error_message", "first_line"]
