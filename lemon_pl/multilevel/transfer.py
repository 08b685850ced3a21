"""Moving fields between the grids of two levels: ``restrict`` (fine -> coarse) and
``interpolate`` (coarse -> fine), for the three kinds of 1-D grid the multi-level problems use.

Grid kinds (``GRID_KINDS``), ``n`` points on the unit period / interval:

* ``periodic_nodes``: ``x_j = j / n`` on a periodic domain (Schrödinger);
* ``periodic_cells``: cell centres ``x_j = (j + 1/2) / n`` on a periodic domain (the data
  engine's finite-volume and spectral families, whose domain [0, 2) scales the same way);
* ``dirichlet_cells``: cell centres of (0, 1) with ``u = 0`` at both ends (rough elliptic).

Interpolation (``INTERPOLATIONS``): ``spectral`` (the trigonometric interpolant: zero-padding
of the FFT, with the half-cell phase of cell-centred grids), ``linear`` (periodic or with the
Dirichlet end values) and ``constant`` (the value of the coarse cell holding the fine point).
Restriction (``RESTRICTIONS``): ``average`` (the mean over a coarse cell's fine cells: the
finite-volume restriction), ``spectral`` (Fourier truncation), ``sample`` (the fine values at
the coarse points, nodes only), and for coefficients ``harmonic`` / ``arithmetic``.

Spectral transfer between cell-centred grids drops the Nyquist mode of the smaller (even)
grid: on cell centres ``cos(pi n x)`` vanishes at every point, so that mode is not determined.
Both directions are exact for trigonometric polynomials of degree ``< min(n, m) / 2``.
"""

from __future__ import annotations

import numpy as np

from lemon_pl.multilevel.problems import RoughElliptic, SchrodingerGroundState, _ratio

GRID_KINDS = ("periodic_nodes", "periodic_cells", "dirichlet_cells")
INTERPOLATIONS = {"periodic_nodes": ("spectral", "linear"), "periodic_cells": ("spectral", "linear", "constant"),
                  "dirichlet_cells": ("linear", "constant")}
RESTRICTIONS = {"periodic_nodes": ("sample", "average", "spectral"), "periodic_cells": ("average", "spectral"),
                "dirichlet_cells": ("harmonic", "arithmetic", "sample")}
#: what the issue asks for by default: spectral on periodic grids, linear otherwise
DEFAULT_INTERPOLATION = {"periodic_nodes": "spectral", "periodic_cells": "spectral", "dirichlet_cells": "linear"}
DEFAULT_RESTRICTION = {"periodic_nodes": "sample", "periodic_cells": "average", "dirichlet_cells": "harmonic"}
_OFFSET = {"periodic_nodes": 0.0, "periodic_cells": 0.5}


def _check(grid: str, how: str, table: dict, what: str) -> None:
    if grid not in GRID_KINDS:
        raise ValueError(f"unknown grid kind {grid!r} ({', '.join(GRID_KINDS)})")
    if how not in table[grid]:
        raise ValueError(f"unknown {what} {how!r} for a {grid} grid ({', '.join(table[grid])})")


def fourier_resample(u: np.ndarray, n_out: int, offset: float = 0.0) -> np.ndarray:
    """Trigonometric interpolant of periodic samples ``u[..., j] = f((j + offset) / n)``
    evaluated at ``(i + offset) / n_out`` (up- or down-sampling).

    With ``offset = 0`` (nodes) an even grid's Nyquist coefficient is split between ``±n/2``
    when padding and folded when truncating; with a non-zero offset it is dropped (see the
    module docstring)."""
    u = np.asarray(u, dtype=float)
    n, m = u.shape[-1], int(n_out)
    if m == n:
        return u.copy()
    if offset == 0.0:  # the nodes' conventions, shared with the Schrödinger problem
        if m > n:
            return SchrodingerGroundState.interpolate(u, m)
        return SchrodingerGroundState.restrict(u, m, how="fourier")
    small = min(n, m)
    keep = small // 2 + 1 if small % 2 else small // 2  # modes 0 .. keep-1; an even grid's Nyquist dropped
    k = np.arange(keep)
    spec = np.fft.rfft(u, axis=-1)[..., :keep] * (m / n) * np.exp(2j * np.pi * k * offset * (1.0 / m - 1.0 / n))
    out = np.zeros((*u.shape[:-1], m // 2 + 1), dtype=complex)
    out[..., :keep] = spec
    return np.fft.irfft(out, n=m, axis=-1)


def _linear_periodic(u: np.ndarray, n_out: int, offset: float) -> np.ndarray:
    n = u.shape[-1]
    p = (np.arange(int(n_out)) + offset) * (n / int(n_out)) - offset  # coarse index coordinate
    left = np.floor(p).astype(int)
    w = p - left
    return u[..., left % n] * (1.0 - w) + u[..., (left + 1) % n] * w


def interpolate(u: np.ndarray, n_out: int, grid: str, how: str | None = None) -> np.ndarray:
    """Values on the level's grid ``(..., n)`` -> values on ``n_out`` points of the same kind."""
    how = how or DEFAULT_INTERPOLATION.get(grid, "")
    _check(grid, how, INTERPOLATIONS, "interpolation")
    u = np.asarray(u, dtype=float)
    if u.shape[-1] == int(n_out):
        return u.copy()
    if grid == "dirichlet_cells":
        return RoughElliptic.interpolate(u, int(n_out), how=how)
    offset = _OFFSET[grid]
    if how == "spectral":
        return fourier_resample(u, n_out, offset)
    if how == "linear":
        return _linear_periodic(u, n_out, offset)
    n = u.shape[-1]  # constant (cells): the coarse cell holding each fine centre
    centres = (np.arange(int(n_out)) + 0.5) / int(n_out)
    return u[..., np.minimum((centres * n).astype(int), n - 1)]


def restrict(u: np.ndarray, n_out: int, grid: str, how: str | None = None) -> np.ndarray:
    """Fine values ``(..., n)`` -> ``n_out`` points (``n`` a multiple of ``n_out``)."""
    how = how or DEFAULT_RESTRICTION.get(grid, "")
    _check(grid, how, RESTRICTIONS, "restriction")
    u = np.asarray(u, dtype=float)
    if u.shape[-1] == int(n_out):
        return u.copy()
    if grid == "dirichlet_cells":
        return RoughElliptic.restrict(u, int(n_out), how=how)
    if grid == "periodic_nodes":
        return SchrodingerGroundState.restrict(u, int(n_out), how="fourier" if how == "spectral" else how)
    r = _ratio(u.shape[-1], int(n_out))
    if how == "average":
        return u.reshape(*u.shape[:-1], int(n_out), r).mean(axis=-1)
    return fourier_resample(u, n_out, _OFFSET[grid])


__all__ = ["GRID_KINDS", "INTERPOLATIONS", "RESTRICTIONS", "DEFAULT_INTERPOLATION", "DEFAULT_RESTRICTION",
           "fourier_resample", "interpolate", "restrict"]
