"""Read operator-family HDF5 files safely and lazily.

One file per family and split, ``ROOT/<family>/<split>.h5``:

=============  ===========================  ==============================================
dataset        shape / dtype                meaning
=============  ===========================  ==============================================
``u``          (n_ops, K, nt, nx) float32   trajectories, one chunk per operator (fletcher32)
``params``     (n_ops, P) float64           operator parameters; attr ``param_names``
``tokens``     (n_ops, L) int16             prefix equation tokens (stored time), PAD-padded
``token_len``  (n_ops,) int16               true token counts
``x``, ``t``   (nx,), (nt,) float64         cell centres; *physical* time of each frame
``n_rejected`` (n_ops,) int32               blow-ups rejected and resampled per operator
``op_done``    (n_ops,) bool                operator fully written (set after its data)
``u_crc32``    (n_ops,) uint32              CRC-32 of each operator's ``u[i]`` (little-endian
                                            float32 bytes); files of generator 1.0 before
                                            it lack it and rely on fletcher32 alone
=============  ===========================  ==============================================

Attributes: family, split, equation_template, t_final, c_t (stored time = c_t * t), gamma,
ic_type, seed, generator_version, n_operators, k, nx, nt, preset, command, complete.

A file is complete when ``complete`` is true, every ``op_done`` is true and every operator's
data are on disk, pass their fletcher32 chunk checksum and match ``u_crc32``
(:func:`verify_operators`; ``lemon-pl generate`` checks this before calling a file complete).
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

REQUIRED = ("u", "params", "tokens", "token_len", "x", "t")
CHECKSUM = "u_crc32"

_WORKER = re.compile(r"^Caught (\w+) (in DataLoader worker process \d+)\.")


class DataFileError(RuntimeError):
    """A data file is missing, truncated, corrupt or inconsistent.

    A DataLoader worker re-raises an exception in the main process as
    ``type(err)("Caught DataFileError in DataLoader worker process N.\\nOriginal Traceback ...")``;
    that message is turned back into the original one-line message (plus the worker), so the
    file, operator and trajectory it names reach the user. The full worker traceback is kept
    in ``worker_traceback``.
    """

    def __init__(self, *args):
        self.worker_traceback = None
        if len(args) == 1 and isinstance(args[0], str):
            original = _unwrap_worker_message(args[0])
            if original is not None:
                self.worker_traceback = args[0]
                args = (original,)
        super().__init__(*args)


def _unwrap_worker_message(msg: str) -> str | None:
    m = _WORKER.match(msg)
    if m is None:
        return None
    marker = f"{m.group(1)}: "
    pos = msg.rfind("\n" + marker)
    if pos < 0:
        pos = msg.rfind(marker)  # the qualified name: lemon_pl.data.io.DataFileError: ...
        if pos < 0:
            return None
    else:
        pos += 1
    line = msg[pos + len(marker):].strip().splitlines()
    return f"{line[0]} ({m.group(2)})" if line else None


def operator_checksum(u: np.ndarray) -> int:
    """CRC-32 of one operator's trajectories as stored (little-endian float32)."""
    return zlib.crc32(np.ascontiguousarray(u, dtype="<f4").tobytes())


def mark_written(f, i: int, u: np.ndarray) -> None:
    """Unit ``i`` (an operator, or a chunk of map samples) has its data in ``f``: store its CRC-32
    of ``u``, flush, and only then set its done flag and flush again, so a flag never outruns its
    data (what :func:`verify_operators` checks on resume)."""
    f[CHECKSUM][i] = operator_checksum(u)
    f.flush()
    f["op_done"][i] = True
    f.flush()


#: h5py driver name of :func:`open_for_writing` (sec2 without HDF5's deferred raw-data writes)
UNBUFFERED_DRIVER = "lemon_pl_unbuffered"


def _unbuffered_fapl(plist, **_kwargs) -> None:
    plist.set_fapl_sec2()
    plist.set_sieve_buf_size(0)  # small writes to contiguous datasets go to disk at once


def open_for_writing(path: str | os.PathLike, mode: str):
    """An ``h5py.File`` for writing whose raw-data writes are not deferred.

    HDF5 normally keeps written chunks (chunk cache) and small contiguous writes (sieve buffer)
    in memory and writes them when a dataset object is closed, which in h5py is whenever a
    temporary ``f["u"]`` is garbage-collected. A write that fails there (a full disk) is only
    printed as an "Exception ignored" traceback, leaves the dataset half closed, and HDF5
    crashes (segmentation fault) on it when the interpreter exits. With no chunk cache and no
    sieve buffer every ``ds[i] = ...`` writes at once and a failure is raised by that statement
    (``OSError`` with errno ENOSPC); what is left deferred is metadata, written by ``flush()``,
    whose failure is raised there and is safe to close after."""
    import h5py

    h5py.register_driver(UNBUFFERED_DRIVER, _unbuffered_fapl)  # idempotent: a dict entry
    return h5py.File(path, mode, driver=UNBUFFERED_DRIVER, rdcc_nbytes=0)


def verify_operators(f, indices: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """Check operators of an open HDF5 file; returns ``[(operator, problem), ...]`` (empty: fine).

    An operator is fine when it is marked done, its chunk exists on disk (an unwritten chunk
    reads as zeros), it reads back (fletcher32) and matches its CRC-32 (when stored).
    """
    u = f["u"]
    n = u.shape[0]
    done = f["op_done"][:] if "op_done" in f else np.ones(n, dtype=bool)
    sums = f[CHECKSUM][:] if CHECKSUM in f else None
    bad = []
    for i in range(n) if indices is None else indices:
        i = int(i)
        if not done[i]:
            bad.append((i, "not written"))
            continue
        zero = (i,) + (0,) * (u.ndim - 1)
        try:
            on_disk = u.id.get_chunk_info_by_coord(zero).byte_offset is not None
        except Exception:  # pragma: no cover - h5py without chunk queries
            on_disk = True
        if not on_disk:
            bad.append((i, "no data on disk"))
            continue
        try:
            arr = u[i]
        except OSError as err:
            bad.append((i, f"unreadable, chunk checksum failed ({_first_line(err)})"))
            continue
        if sums is not None and operator_checksum(arr) != int(sums[i]):
            bad.append((i, "data do not match their CRC-32 checksum"))
    return bad


def describe_problems(problems: list[tuple[int, str]]) -> str:
    """``operator 1: no data on disk`` (plus how many more), for one-line messages."""
    i, why = problems[0]
    more = f"; {len(problems) - 1} more operator(s) damaged" if len(problems) > 1 else ""
    return f"operator {i}: {why}{more}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _regen_hint(path: Path, attrs: dict | None = None) -> str:
    cmd = (attrs or {}).get("command")
    if isinstance(cmd, bytes):
        cmd = cmd.decode()
    fam = path.parent.name
    root = path.parent.parent
    if cmd:
        return f"regenerate it with: {cmd} --families {fam} --overwrite"
    return f"regenerate it with: lemon-pl generate --root {root} --families {fam} --overwrite"


def open_for_reading(path: str | os.PathLike):
    """``h5py.File(path, "r")`` of a regular file; anything else that exists (a FIFO, a device, a
    socket: opening it could block forever) raises ``OSError`` (EINVAL) naming it, as an unreadable
    file does, so every reader's one-line error applies."""
    import errno

    import h5py

    path = Path(path)
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, a device or a socket)", str(path))
    return h5py.File(path, "r")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Attributes of a complete data file; raises DataFileError if it is unreadable or incomplete."""
    import h5py

    path = Path(path)
    try:
        with open_for_reading(path) as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            missing = [d for d in REQUIRED if d not in f]
            unfinished = int((~f["op_done"][:]).sum()) if "op_done" in f else 0
    except FileNotFoundError:
        raise DataFileError(f"{path} does not exist; {_regen_hint(path)}") from None
    except OSError as err:
        raise DataFileError(f"{path} is corrupt or truncated ({err}); {_regen_hint(path)}") from None
    if missing:
        raise DataFileError(f"{path} lacks datasets {missing}; {_regen_hint(path, attrs)}")
    if not bool(attrs.get("complete", False)) or unfinished:
        raise DataFileError(f"{path} is incomplete; {_regen_hint(path, attrs)}")
    return attrs


class FamilySplit:
    """Lazy reader of one ``<family>/<split>.h5`` file.

    Small arrays (params, tokens, x, t) are read at open; trajectories are read per operator
    or per sample on demand, so memory stays bounded on the paper preset. The HDF5 handle is
    opened lazily and re-opened after fork/pickle, so the object can be shared with DataLoader
    worker processes.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        self.attrs = read_attrs(self.path)
        try:
            with open_for_reading(self.path) as f:
                shape = f["u"].shape
                self.params = f["params"][:]
                self.param_names = [n.decode() if isinstance(n, bytes) else str(n)
                                    for n in f["params"].attrs.get("param_names", [])]
                self.tokens = f["tokens"][:].astype(np.int64)
                self.token_len = f["token_len"][:].astype(np.int64)
                self.x = f["x"][:]
                self.t = f["t"][:]
                self.n_rejected = f["n_rejected"][:] if "n_rejected" in f else None
        except OSError as err:
            raise DataFileError(f"{self.path} is corrupt ({err}); {_regen_hint(self.path, self.attrs)}") from None
        self.n_operators, self.k, self.nt, self.nx = shape
        checks = [
            (self.params.shape[0] == self.n_operators, "params rows"),
            (self.tokens.shape[0] == self.n_operators, "tokens rows"),
            (self.token_len.shape[0] == self.n_operators, "token_len rows"),
            (self.x.shape == (self.nx,), "x length"),
            (self.t.shape == (self.nt,), "t length"),
            (bool(np.all(self.token_len <= self.tokens.shape[1])), "token lengths"),
        ]
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise DataFileError(f"{self.path} is inconsistent ({', '.join(bad)} do not match u {shape}); "
                                f"{_regen_hint(self.path, self.attrs)}")
        self.family = str(self.attrs.get("family", self.path.parent.name))
        self.split = str(self.attrs.get("split", self.path.stem))
        self.c_t = float(self.attrs.get("c_t", 1.0))
        self._h5 = None
        self._pid = None

    # -- handle management -------------------------------------------------
    def _file(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = open_for_reading(self.path)
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"] = None
        return state

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- data ----------------------------------------------------------------
    @property
    def stored_time(self) -> np.ndarray:
        """Model time of each frame, c_t * t, in [0, 2)."""
        return self.t * self.c_t

    def _read(self, index) -> np.ndarray:
        try:
            return self._file()["u"][index]
        except OSError as err:
            where = (f"operator {index[0]} trajectory {index[1]}" if isinstance(index, tuple)
                     else f"operator {index}")
            raise DataFileError(f"{self.path}: cannot read {where} ({_first_line(err)}); the file is corrupt; "
                                f"{_regen_hint(self.path, self.attrs)}") from None

    def operator(self, i: int) -> np.ndarray:
        """All K trajectories of operator ``i``: (K, nt, nx) float32."""
        return self._read(int(i))

    def sample(self, i: int, j: int) -> np.ndarray:
        """Trajectory ``j`` of operator ``i``: (nt, nx) float32."""
        return self._read((int(i), int(j)))

    def operator_tokens(self, i: int) -> np.ndarray:
        return self.tokens[i, : self.token_len[i]]

    def __len__(self) -> int:
        return self.n_operators * self.k

    def __repr__(self) -> str:
        return (f"FamilySplit({self.family}/{self.split}: {self.n_operators} operators x {self.k} "
                f"trajectories x {self.nt} frames x {self.nx} points)")


def open_split(root: str | os.PathLike, family: str, split: str) -> FamilySplit:
    """Open ``ROOT/<family>/<split>.h5`` with a clear error if it is missing or damaged."""
    path = Path(root) / family / f"{split}.h5"
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        extra = " (an interrupted run left a .partial file; re-run the same command to resume)" if partial.exists() else ""
        raise DataFileError(f"{path} does not exist{extra}; generate it with: lemon-pl generate --root {root} "
                            f"--families {family}")
    return FamilySplit(path)
