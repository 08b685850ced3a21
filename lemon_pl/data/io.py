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
=============  ===========================  ==============================================

Attributes: family, split, equation_template, t_final, c_t (stored time = c_t * t), gamma,
ic_type, seed, generator_version, n_operators, k, nx, nt, preset, command, complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED = ("u", "params", "tokens", "token_len", "x", "t")


class DataFileError(RuntimeError):
    """A data file is missing, truncated, corrupt or inconsistent."""


def _regen_hint(path: Path, attrs: dict | None = None) -> str:
    cmd = (attrs or {}).get("command")
    if isinstance(cmd, bytes):
        cmd = cmd.decode()
    fam = path.parent.name
    root = path.parent.parent
    if cmd:
        return f"regenerate it with: {cmd} --families {fam} --overwrite"
    return f"regenerate it with: lemon-pl generate --root {root} --families {fam} --overwrite"


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Attributes of a complete data file; raises DataFileError if it is unreadable or incomplete."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            missing = [d for d in REQUIRED if d not in f]
    except FileNotFoundError:
        raise DataFileError(f"{path} does not exist; {_regen_hint(path)}") from None
    except OSError as err:
        raise DataFileError(f"{path} is corrupt or truncated ({err}); {_regen_hint(path)}") from None
    if missing:
        raise DataFileError(f"{path} lacks datasets {missing}; {_regen_hint(path, attrs)}")
    if not bool(attrs.get("complete", False)):
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
            with h5py.File(self.path, "r") as f:
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
            self._h5 = h5py.File(self.path, "r")
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
            raise DataFileError(f"{self.path}: cannot read trajectories ({err}); the file is corrupt; "
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
