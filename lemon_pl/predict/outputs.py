"""What a prediction writes: ``prediction.npz``, space-time figures, and the printed summary.

``prediction.npz`` (``numpy.load(path)`` reads it, no pickle):

=======================  ===================  ===============================================
``x``                    (nx,)                cell centres of the periodic [0, 2)
``t``                    (B, F)               physical time of each frame of ``u``
``t_model``              (F,)                 the same frames in model (stored) time, 2k/nt
``n_input``              ()                   leading frames of ``u`` that were the input
``u``                    (B, F, nx)           prediction (the input frames first)
``u_ref``                (B, F, nx)           the solver's solution or the data (NaN: none)
``rel_l2``               (B,)                 relative L2 of the predicted frames vs ``u_ref``
``rel_l2_persistence``   (B,)                 the same for repeating the initial condition
``u_zero_shot``,         (B, F, nx), (B,)     before adaptation (only with ``--adapt``)
``rel_l2_zero_shot``
``equation``             (B,) str             the equation (physical time)
``tokens``, ``token_len`` (B, L), (B,)        its prefix token ids as the model read them
``family``, ``params``   (B,) str             recognised family ('' if none), its parameters (JSON)
``t_final``, ``ic``      (B,), (B,) str       horizon, initial condition
``latency_ms``           (B,)                 model time per prediction (batched forward / B)
``solver_ms``            (B,)                 solver time per prediction (NaN: none)
``model_class``,         ()  str              stage and network classes, the checkpoint, its run
``net_class``,                                config, and what was predicted (``equation`` or
``ckpt_path``,                                ``data split``)
``config_path``,
``source``
=======================  ===================  ===============================================

The relative L2 is LeMON's metric (``lemon_pl.core.metrics.relative_l2``) over the predicted
frames (the input frames excluded), per prediction.

``lemon-pl predict`` writes its folder all or nothing (:func:`write_folder`): every file goes into
a temporary sibling ``.<out>.tmp-<pid>@<host>``, each flushed to disk, and the folder is then
renamed into ``--out`` (an existing prediction folder is swapped out whole and removed). A failure
on the way - a full disk, an unwritable folder, an error while drawing - removes the temporary
folder and any parent folder it created, and leaves a previous ``--out`` as it was. A folder that
holds anything else than predict's files (:func:`foreign_entries`) is never replaced.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

import numpy as np

from lemon_pl.core.checkpointing import atomic_write, os_error_cause
from lemon_pl.data.symbols import PAD_ID
from lemon_pl.core.resources import fsync_dir


@dataclass
class PredictionSet:
    x: np.ndarray
    t: np.ndarray
    t_model: np.ndarray
    n_input: int
    u: np.ndarray
    u_ref: np.ndarray
    equation: list[str]
    tokens: list[list[int]]
    family: list[str]
    params: list[dict]
    t_final: np.ndarray
    ic: list[str]
    latency_ms: np.ndarray
    solver_ms: np.ndarray
    model_class: str
    net_class: str
    ckpt_path: str
    config_path: str
    source: str = "equation"
    u_zero_shot: np.ndarray | None = None
    ref_name: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.u.shape[0])

    # ------------------------------------------------------------------ metrics
    def rel_l2(self, u: np.ndarray | None = None) -> np.ndarray:
        """Per prediction, over the predicted frames: ||u - u_ref|| / (||u_ref|| + 1e-7) (NaN: no reference)."""
        u = self.u if u is None else u
        k = self.n_input
        diff = (u[:, k:] - self.u_ref[:, k:]).reshape(len(u), -1)
        ref = self.u_ref[:, k:].reshape(len(u), -1)
        return np.linalg.norm(diff, axis=1) / (np.linalg.norm(ref, axis=1) + 1e-7)

    def rel_l2_persistence(self) -> np.ndarray:
        last = np.repeat(self.u[:, self.n_input - 1:self.n_input], self.u.shape[1], axis=1)
        return self.rel_l2(last)

    # ------------------------------------------------------------------ files
    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self)
        length = max([len(t) for t in self.tokens] + [1])
        toks = np.full((n, length), PAD_ID, dtype=np.int16)
        for i, t in enumerate(self.tokens):
            toks[i, :len(t)] = t
        out = {
            "x": self.x, "t": self.t, "t_model": self.t_model, "n_input": np.int64(self.n_input),
            "u": self.u.astype(np.float32), "u_ref": self.u_ref.astype(np.float32),
            "rel_l2": self.rel_l2(), "rel_l2_persistence": self.rel_l2_persistence(),
            "equation": np.array(self.equation, dtype=str), "tokens": toks,
            "token_len": np.array([len(t) for t in self.tokens], dtype=np.int16),
            "family": np.array(self.family, dtype=str),
            "params": np.array([json.dumps(p) for p in self.params], dtype=str),
            "t_final": np.asarray(self.t_final, dtype=np.float64), "ic": np.array(self.ic, dtype=str),
            "latency_ms": np.asarray(self.latency_ms, dtype=np.float64),
            "solver_ms": np.asarray(self.solver_ms, dtype=np.float64),
            "model_class": np.array(self.model_class), "net_class": np.array(self.net_class),
            "ckpt_path": np.array(self.ckpt_path), "config_path": np.array(self.config_path),
            "source": np.array(self.source),
        }
        if self.u_zero_shot is not None:
            out["u_zero_shot"] = self.u_zero_shot.astype(np.float32)
            out["rel_l2_zero_shot"] = self.rel_l2(self.u_zero_shot)
        return out

    def save(self, folder: str | Path, figures: Sequence[tuple[int, str]] | None = None,
             title=None) -> list[Path]:
        """Write ``prediction.npz`` and the figures ``[(index, file name), ...]`` atomically into ``folder``
        (default: ``prediction.png``, or ``prediction_NNN.png`` for the predictions of :meth:`figure_indices`)."""
        folder = Path(folder)
        arrays = self.arrays()
        written = [atomic_write(folder / "prediction.npz", lambda fh: np.savez_compressed(fh, **arrays))]
        if figures is None:
            figures = [(0, "prediction.png")] if len(self) == 1 else [(i, f"prediction_{i:03d}.png")
                                                                       for i in self.figure_indices()]
        for i, name in figures:
            written.append(atomic_write(folder / name, self.figure_png(i, title(i) if title else None)))
        return written

    def files(self) -> list[tuple[str, Callable[[IO[bytes]], None]]]:
        """``[(name, writer), ...]`` of what ``lemon-pl predict`` writes: ``prediction.npz``, then the
        figures (``prediction.png``, or ``prediction_NNN.png`` for :meth:`figure_indices`)."""
        arrays = self.arrays()
        out: list[tuple[str, Callable[[IO[bytes]], None]]] = [
            ("prediction.npz", lambda fh: np.savez_compressed(fh, **arrays))]
        figures = [(0, "prediction.png")] if len(self) == 1 else [(i, f"prediction_{i:03d}.png")
                                                                   for i in self.figure_indices()]
        for i, name in figures:
            out.append((name, lambda fh, i=i: fh.write(self.figure_png(i))))
        return out

    def save_folder(self, out: str | Path) -> list[Path]:
        """Write :meth:`files` into the folder ``out``, all or nothing (:func:`write_folder`)."""
        return write_folder(out, self.files())

    def figure_indices(self, limit: int = 16) -> list[int]:
        """Which predictions get a figure: every equation's first, then the others, ``limit`` in all
        (at least one per equation)."""
        first = list(dict.fromkeys(self.equation))
        chosen = [self.equation.index(e) for e in first]
        rest = [i for i in range(len(self)) if i not in set(chosen)]
        return sorted(chosen + rest[:max(0, limit - len(chosen))])

    def figure_png(self, i: int, title: str | None = None) -> bytes:
        from lemon_pl.core.figures import pyplot, space_time_figure

        ref = self.u_ref[i] if np.isfinite(self.u_ref[i]).all() else None
        rel = float(self.rel_l2()[i]) if ref is not None else None
        ref_name = self.ref_name[i] if i < len(self.ref_name) and self.ref_name[i] else "solver"
        text = title or f"{self.equation[i]}\n{self.ic[i]}, t_final={self.t_final[i]:g}"
        fig = space_time_figure(self.x, self.t[i], self.u[i], ref, text, ref_name=ref_name, rel_l2=rel)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        pyplot().close(fig)
        return buf.getvalue()


def concat(sets: Sequence[PredictionSet]) -> PredictionSet:
    """Several prediction sets (same grid and frames) as one."""
    first = sets[0]
    cat = lambda name: np.concatenate([getattr(s, name) for s in sets])  # noqa: E731
    merged = PredictionSet(
        first.x, cat("t"), first.t_model, first.n_input, cat("u"), cat("u_ref"),
        sum((s.equation for s in sets), []), sum((s.tokens for s in sets), []), sum((s.family for s in sets), []),
        sum((s.params for s in sets), []), cat("t_final"), sum((s.ic for s in sets), []), cat("latency_ms"),
        cat("solver_ms"), first.model_class, first.net_class, first.ckpt_path, first.config_path, first.source,
        None, sum((s.ref_name or [""] * len(s) for s in sets), []))
    if any(s.u_zero_shot is not None for s in sets):
        merged.u_zero_shot = np.concatenate([s.u if s.u_zero_shot is None else s.u_zero_shot for s in sets])
    return merged


# --------------------------------------------------------------------------- all-or-nothing folders

#: the names ``lemon-pl predict`` writes into ``--out``
PREDICTION_NAME = re.compile(r"prediction(_\d{3,})?\.(npz|png)")
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


class PredictionWriteError(OSError):
    """The output folder could not be written; nothing was (one line naming ``--out``)."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def foreign_entries(folder: str | Path) -> list[str]:
    """Names in ``folder`` that ``lemon-pl predict`` did not write (sorted; [] for a missing folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not (p.is_file() and not p.is_symlink()
                                                              and PREDICTION_NAME.fullmatch(p.name)))


def _write_file(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """One new file, flushed to disk."""
    with open(path, "xb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or file system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove_stale(parent: Path, name: str) -> None:
    """Temporary folders of ``name`` left by dead processes of this host (a killed predict)."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp|old)-(\d+)@{re.escape(_HOST)}")
    for p in parent.iterdir() if parent.is_dir() else []:
        m = pattern.fullmatch(p.name)
        if not m or int(m.group(2)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(2)), 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _install(tmp: Path, target: Path, shown: Path) -> None:
    """Put the complete folder ``tmp`` at ``target``: a rename, or a swap with a previous prediction
    folder, which is then removed."""
    if not target.exists() and not target.is_symlink():
        os.rename(tmp, target)
        return
    if not target.is_dir():
        raise PredictionWriteError(errno.ENOTDIR, f"--out {shown} exists and is not a folder")
    foreign = foreign_entries(target)
    if foreign:
        raise PredictionWriteError(errno.ENOTEMPTY, f"--out {shown} holds files lemon-pl predict did not write "
                                                    f"({', '.join(foreign[:3])}); nothing was written")
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # the previous prediction, now at tmp
        return
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_folder(out: str | Path, files: Sequence[tuple[str, Callable[[IO[bytes]], None]]]) -> list[Path]:
    """Write ``files`` (``[(name, writer(fh)), ...]``) as the folder ``out``, all or nothing.

    The files are written into the temporary sibling ``.<out>.tmp-<pid>@<host>`` and flushed to
    disk; the complete folder is then renamed to ``out`` - swapped with a previous prediction folder
    there, which is removed (a folder holding anything else is refused: :func:`foreign_entries`).
    Any failure removes the temporary folder and the parent folders made for it, leaves ``out`` as
    it was, and is one :class:`PredictionWriteError` line (a full disk says so, and where)."""
    shown = Path(out)
    target = Path(os.path.realpath(shown)) if shown.is_symlink() else shown
    parent = target.parent
    missing = [d for d in (parent, *parent.parents) if not d.exists()]  # deepest first
    tmp = parent / f".{target.name}.tmp-{os.getpid()}@{_HOST}"
    written: list[Path] = []
    current = tmp
    made = False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, target.name)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        made = True
        for name, write in files:
            current = tmp / name
            _write_file(current, write)
            written.append(shown / name)
        current = tmp
        fsync_dir(tmp, strict=True)
        current = target
        _install(tmp, target, shown)
        made = False
        fsync_dir(parent, strict=True)
    except BaseException as err:
        if made:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in missing:
            try:
                d.rmdir()
            except OSError:
                pass
        if isinstance(err, PredictionWriteError):
            raise
        cause = os_error_cause(err)
        if cause is None or not isinstance(err, Exception):
            raise
        kept = f"the previous {shown} is intact" if shown.exists() else f"{shown} was not created"
        if cause.errno == errno.ENOSPC or "No space left" in str(cause):
            msg = (f"the disk is full (no space left on device) while writing --out {shown} (at {current}); "
                   f"nothing was written, {kept}")
        else:
            reason = cause.strerror or str(cause).splitlines()[0] or type(cause).__name__
            msg = f"could not write --out {shown} (at {current}): {reason}; nothing was written, {kept}"
        failure = PredictionWriteError(cause.errno, msg)
        raise failure from None
    return written
