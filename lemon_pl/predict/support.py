"""Support files for few-shot prediction (``lemon-pl predict --adapt FILE --steps K``).

Two formats are read:

* **a support file** (HDF5) holding trajectories of the one equation being predicted:

  ==============  =====================  ==================================================
  ``u``           (n, nt, nx) float      n trajectories, frame k at physical time
                                          k * t_final / nt (k = 0 .. nt-1), frame 0 the IC
  ``x``           (nx,) optional         must be the model's grid (cell centres of [0, 2))
  ``t``           (nt,) optional         physical times, k * t_final / nt
  attr ``t_final`` optional              the horizon (else from ``t``, else ``--t_final``)
  attr ``equation`` optional             the equation (used when none is given)
  ==============  =====================  ==================================================

  ``nt`` and ``nx`` must be the model's (``data.nt`` / ``data.nx`` of its training run);
* **a data-engine file** ``ROOT/<family>/<split>.h5`` (``lemon-pl generate``): the trajectories of
  one operator (``--adapt-operator``, default 0); its family, parameters and horizon are used
  when no equation is given.

Write one from numpy with::

    import h5py
    with h5py.File("support.h5", "w") as f:
        f["u"] = u                      # (n, nt, nx)
        f.attrs["t_final"] = 2.0
        f.attrs["equation"] = "u_t = 0.003*u_xx + u*(1-u)"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lemon_pl.data import ics


class SupportFileError(ValueError):
    """A support file that cannot be used (the message names the file)."""


@dataclass
class Support:
    """Support trajectories (n, nt, nx) of one equation, and what the file says about it."""

    path: Path
    u: np.ndarray
    t_final: float | None
    equation: str | None = None  # written equation (support file) ...
    family: str | None = None  # ... or the data-engine operator's family and parameters
    params: dict[str, float] | None = None
    operator: int | None = None

    def describe(self) -> str:
        src = f"{self.path}" + (f", operator {self.operator}" if self.operator is not None else "")
        return f"{len(self.u)} trajectories from {src}"


def read_support(path: str | Path, nt: int, nx: int, operator: int = 0, size: int | None = None) -> Support:
    """Read and check a support file (see the module doc) against the model's ``nt`` x ``nx`` grid."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise SupportFileError(f"--adapt {path} does not exist")
    if not path.is_file():
        raise SupportFileError(f"--adapt {path} is not a file")
    try:
        with h5py.File(path, "r") as f:
            if "u" not in f:
                raise SupportFileError(f"--adapt {path} has no dataset 'u' (trajectories (n, nt, nx))")
            ndim = f["u"].ndim
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:
        raise SupportFileError(f"--adapt {path} is not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    if ndim == 4:
        sup = _engine_file(path, operator)
    elif ndim == 3:
        sup = _support_file(path, attrs)
    else:
        raise SupportFileError(f"--adapt {path}: 'u' has {ndim} dimensions; expected (n, nt, nx) or a data-engine "
                               "file's (n_operators, K, nt, nx)")
    n, nt_file, nx_file = sup.u.shape
    if (nt_file, nx_file) != (nt, nx):
        raise SupportFileError(f"--adapt {path} holds nt={nt_file} frames x nx={nx_file} points, but the model "
                               f"works on nt={nt} frames x nx={nx} points (its training data's grid)")
    if n == 0:
        raise SupportFileError(f"--adapt {path} holds no trajectories")
    if size is not None:
        if size < 1:
            raise SupportFileError(f"--support-size must be at least 1, got {size}")
        sup.u = sup.u[:size]
    bad = ~np.isfinite(sup.u.reshape(len(sup.u), -1)).all(axis=1)
    if bad.any():
        raise SupportFileError(f"--adapt {path}: trajectory {int(np.flatnonzero(bad)[0])} has NaN/Inf values")
    return sup


def _support_file(path: Path, attrs: dict) -> Support:
    import h5py

    with h5py.File(path, "r") as f:
        u = np.asarray(f["u"][...], dtype=np.float64)
        x = np.asarray(f["x"][...], dtype=np.float64) if "x" in f else None
        t = np.asarray(f["t"][...], dtype=np.float64) if "t" in f else None
    nt, nx = u.shape[1:]
    if x is not None and (x.shape != (nx,) or not np.allclose(x, ics.grid(nx), rtol=0, atol=1e-9)):
        raise SupportFileError(f"--adapt {path}: 'x' is not the grid of the models, the cell centres "
                               f"(i + 1/2)*2/{nx} of the periodic [0, 2)")
    t_final = attrs.get("t_final")
    t_final = None if t_final is None else float(t_final)
    if t is not None:
        if t.shape != (nt,) or nt < 2:
            raise SupportFileError(f"--adapt {path}: 't' has shape {t.shape}, expected ({nt},)")
        from_t = float(t[1] - t[0]) * nt
        if not np.allclose(t, np.arange(nt) * from_t / nt, rtol=1e-6, atol=1e-12):
            raise SupportFileError(f"--adapt {path}: 't' is not uniform from 0 (frames at k*t_final/nt expected)")
        if t_final is not None and abs(t_final - from_t) > 1e-6 * t_final:
            raise SupportFileError(f"--adapt {path}: its t_final attribute ({t_final:g}) and its 't' "
                                   f"(frames to {from_t:g}) disagree")
        t_final = from_t
    if t_final is not None and not (np.isfinite(t_final) and t_final > 0):
        raise SupportFileError(f"--adapt {path}: t_final must be positive, got {t_final}")
    eq = attrs.get("equation")
    return Support(path, u, t_final, equation=str(eq) if eq else None)


def _engine_file(path: Path, operator: int) -> Support:
    from lemon_pl.data.io import DataFileError, FamilySplit

    try:
        split = FamilySplit(path)
        if not 0 <= operator < split.n_operators:
            raise SupportFileError(f"--adapt-operator {operator}: {path} holds operators 0..{split.n_operators - 1}")
        u = np.asarray(split.operator(operator), dtype=np.float64)
    except DataFileError as err:
        raise SupportFileError(f"--adapt {err}") from None
    params = dict(zip(split.param_names, map(float, split.params[operator])))
    t_final = float(split.attrs.get("t_final", split.t[1] * split.nt))
    split.close()
    return Support(path, u, t_final, family=split.family, params=params, operator=operator)
