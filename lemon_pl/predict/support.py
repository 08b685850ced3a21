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


#: the largest small dataset (``x``, ``t``, ``params``, ``tokens`` ...) read from a support file (bytes)
MAX_SMALL_BYTES = 64 * 1024 * 1024


def read_support(path: str | Path, nt: int, nx: int, operator: int | None = None, size: int | None = None
                 ) -> Support:
    """Read and check a support file (see the module doc) against the model's ``nt`` x ``nx`` grid.

    Everything that can be checked from the file's metadata is checked before any trajectory is
    read: the declared shape of ``u`` (the model's grid; at most ``limits.SUPPORT_SIZE`` trajectories
    unless ``size`` takes the first ones), its dtype (numbers), the size of the other datasets. Only
    the trajectories used are read; NaN/Inf values, a horizon outside ``limits.T_FINAL`` and
    (data-engine files) parameters outside their family's range are refused."""
    import h5py

    from lemon_pl.predict.limits import SUPPORT_SIZE

    path = Path(path)
    if not path.exists():
        raise SupportFileError(f"--adapt {path} does not exist")
    if not path.is_file():
        raise SupportFileError(f"--adapt {path} is not a file")
    if size is not None and not SUPPORT_SIZE[0] <= size <= SUPPORT_SIZE[1]:
        raise SupportFileError(f"--support-size must be an integer in {SUPPORT_SIZE[0]} .. {SUPPORT_SIZE[1]}, "
                               f"got {size}")
    try:
        with h5py.File(path, "r") as f:
            if "u" not in f or not isinstance(f["u"], h5py.Dataset):
                raise SupportFileError(f"--adapt {path} has no dataset 'u' (trajectories (n, nt, nx))")
            shape, dtype = tuple(int(d) for d in f["u"].shape), f["u"].dtype
            for name, item in f.items():
                if name != "u" and isinstance(item, h5py.Dataset) and \
                        int(item.size or 0) * max(int(item.dtype.itemsize), 1) > MAX_SMALL_BYTES:
                    raise SupportFileError(f"--adapt {path}: dataset {name!r} declares shape {item.shape}, more than "
                                           f"a support file's {name!r} holds; is it the right file?")
            attrs = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:
        raise SupportFileError(f"--adapt {path} is not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    if dtype.kind not in "iuf":
        raise SupportFileError(f"--adapt {path}: 'u' holds {dtype} values, not numbers")
    if len(shape) not in (3, 4):
        raise SupportFileError(f"--adapt {path}: 'u' has {len(shape)} dimensions; expected (n, nt, nx) or a "
                               "data-engine file's (n_operators, K, nt, nx)")
    if len(shape) == 3 and operator is not None:
        raise SupportFileError(f"--adapt-operator {operator}: {path} is a support file of one equation (n, nt, nx), "
                               "not a data-engine file (n_operators, K, nt, nx)")
    nt_file, nx_file = shape[-2:]
    if (nt_file, nx_file) != (nt, nx):
        raise SupportFileError(f"--adapt {path} holds nt={nt_file} frames x nx={nx_file} points, but the model "
                               f"works on nt={nt} frames x nx={nx} points (its training data's grid)")
    n = shape[-3]
    if n == 0:
        raise SupportFileError(f"--adapt {path} holds no trajectories")
    if size is None and n > SUPPORT_SIZE[1]:
        raise SupportFileError(f"--adapt {path} holds {n} trajectories{' per operator' if len(shape) == 4 else ''}, "
                               f"more than a support set may have ({SUPPORT_SIZE[1]}); take the first ones with "
                               "--support-size N")
    rows = n if size is None else min(size, n)
    if len(shape) == 4:
        sup = _engine_file(path, 0 if operator is None else operator, rows)
    else:
        sup = _support_file(path, attrs, rows)
    bad = ~np.isfinite(sup.u.reshape(len(sup.u), -1)).all(axis=1)
    if bad.any():
        raise SupportFileError(f"--adapt {path}: trajectory {int(np.flatnonzero(bad)[0])} has NaN/Inf values")
    return sup


def _horizon(path: Path, value) -> float | None:
    """A support file's horizon as a float within ``limits.T_FINAL`` (None: not given)."""
    from lemon_pl.predict.limits import LimitError, check_t_final

    if value is None:
        return None
    try:
        value = float(np.asarray(value).reshape(-1)[0]) if np.ndim(value) else float(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise SupportFileError(f"--adapt {path}: its t_final attribute ({str(value)[:40]!r}) is not a number") from None
    try:
        return check_t_final(value, f"--adapt {path}: its t_final")
    except LimitError as err:
        raise SupportFileError(str(err)) from None


def _support_file(path: Path, attrs: dict, rows: int) -> Support:
    import h5py

    with h5py.File(path, "r") as f:
        u = np.asarray(f["u"][:rows], dtype=np.float64)
        x = np.asarray(f["x"][...], dtype=np.float64) if "x" in f else None
        t = np.asarray(f["t"][...], dtype=np.float64) if "t" in f else None
    nt, nx = u.shape[1:]
    if x is not None and (x.shape != (nx,) or not np.allclose(x, ics.grid(nx), rtol=0, atol=1e-9)):
        raise SupportFileError(f"--adapt {path}: 'x' is not the grid of the models, the cell centres "
                               f"(i + 1/2)*2/{nx} of the periodic [0, 2)")
    t_final = _horizon(path, attrs.get("t_final"))
    if t is not None:
        if t.shape != (nt,) or nt < 2:
            raise SupportFileError(f"--adapt {path}: 't' has shape {t.shape}, expected ({nt},)")
        if not np.isfinite(t).all():
            raise SupportFileError(f"--adapt {path}: 't' has NaN/Inf values")
        from_t = float(t[1] - t[0]) * nt
        if not np.allclose(t, np.arange(nt) * from_t / nt, rtol=1e-6, atol=1e-12):
            raise SupportFileError(f"--adapt {path}: 't' is not uniform from 0 (frames at k*t_final/nt expected)")
        from_t = _horizon(path, from_t)
        if t_final is not None and abs(t_final - from_t) > 1e-6 * t_final:
            raise SupportFileError(f"--adapt {path}: its t_final attribute ({t_final:g}) and its 't' "
                                   f"(frames to {from_t:g}) disagree")
        t_final = from_t
    eq = attrs.get("equation")
    if eq is not None and not isinstance(eq, str):
        raise SupportFileError(f"--adapt {path}: its 'equation' attribute is a {type(eq).__name__}, not a string")
    return Support(path, u, t_final, equation=eq or None)


def _engine_file(path: Path, operator: int, rows: int) -> Support:
    import h5py

    from lemon_pl.data.io import DataFileError, FamilySplit

    try:
        split = FamilySplit(path)
    except DataFileError as err:
        raise SupportFileError(f"--adapt {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise SupportFileError(f"--adapt {path} is not a usable data-engine file ({str(err).splitlines()[0]})"
                               ) from None
    try:
        if not 0 <= operator < split.n_operators:
            raise SupportFileError(f"--adapt-operator {operator}: {path} holds operators 0..{split.n_operators - 1}")
        if len(split.param_names) != np.shape(split.params)[-1]:
            raise SupportFileError(f"--adapt {path}: its params do not match their names {split.param_names}")
        try:
            with h5py.File(path, "r") as f:
                u = np.asarray(f["u"][operator, :rows], dtype=np.float64)
            params = dict(zip(split.param_names, map(float, split.params[operator])))
        except (OSError, ValueError, TypeError) as err:
            raise SupportFileError(f"--adapt {path}: cannot read operator {operator} ({str(err).splitlines()[0]})"
                                   ) from None
        raw_t = split.attrs.get("t_final")
        if raw_t is None:
            raw_t = float(split.t[1]) * split.nt if split.nt > 1 else None
        t_final = _horizon(path, raw_t)
        return Support(path, u, t_final, family=split.family, params=params, operator=operator)
    finally:
        split.close()
