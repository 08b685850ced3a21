"""Moving fields between the grids of two levels: ``restrict`` (fine -> coarse) and
``interpolate`` (coarse -> fine), for the three kinds of 1-D grid the data engine and the
multi-level problems use (the data engine restricts fine initial conditions with it, the
multi-level problems and stage move inputs and labels between levels with it).

Grid kinds (``GRID_KINDS``), ``n`` points on the unit period / interval:

* ``periodic_nodes``: ``x_j = j / n`` on a periodic domain (the Schrödinger maps; :func:`restrict_periodic_nodes`,
  :func:`interpolate_periodic_nodes`);
* ``periodic_cells``: cell centres ``x_j = (j + 1/2) / n`` on a periodic domain (the data
  engine's finite-volume and spectral families, whose domain [0, 2) scales the same way);
* ``dirichlet_cells``: cell centres of (0, 1) with ``u = 0`` at both ends (the rough elliptic maps;
  :func:`restrict_dirichlet_cells`, :func:`interpolate_dirichlet_cells`).

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

GRID_KINDS = ("periodic_nodes", "periodic_cells", "dirichlet_cells")
INTERPOLATIONS = {"periodic_nodes": ("spectral", "linear"), "periodic_cells": ("spectral", "linear", "constant"),
                  "dirichlet_cells": ("linear", "constant")}
RESTRICTIONS = {"periodic_nodes": ("sample", "average", "spectral"), "periodic_cells": ("average", "spectral"),
                "dirichlet_cells": ("harmonic", "arithmetic", "sample")}
#: what the issue asks for by default: spectral on periodic grids, linear otherwise
DEFAULT_INTERPOLATION = {"periodic_nodes": "spectral", "periodic_cells": "spectral", "dirichlet_cells": "linear"}
DEFAULT_RESTRICTION = {"periodic_nodes": "sample", "periodic_cells": "average", "dirichlet_cells": "harmonic"}
_OFFSET = {"periodic_nodes": 0.0, "periodic_cells": 0.5}


# ----------------------------------------------------------------------------- grids


def cell_centres(n: int) -> np.ndarray:
    """Centres ``(i + 1/2) / n`` of ``n`` equal cells of (0, 1)."""
    return (np.arange(n) + 0.5) / n


def periodic_points(n: int) -> np.ndarray:
    """Points ``j / n`` of the periodic grid of [0, 1)."""
    return np.arange(n) / n


def grid_ratio(n_fine: int, n_coarse: int) -> int:
    """``n_fine / n_coarse``; a ValueError unless ``n_fine`` is a multiple of ``n_coarse >= 1``."""
    if n_coarse < 1 or n_fine % n_coarse:
        raise ValueError(f"n_fine={n_fine} is not a multiple of n_coarse={n_coarse}")
    return n_fine // n_coarse


# ----------------------------------------------------------------------------- Dirichlet cells


def restrict_dirichlet_cells(a_fine: np.ndarray, n_coarse: int, how: str = "harmonic") -> np.ndarray:
    """Cell coefficients on ``n_coarse`` cells from ``n_fine`` (a multiple) cells.

    ``harmonic``: ``1 / mean(1 / a)`` over the fine cells of a coarse cell, the effective
    coefficient of cells in series (exact for the flux through a cell when ``f = 0``);
    ``arithmetic``: the mean; ``sample``: the fine cell at the coarse centre (for an even
    ratio the centre is a fine face and the cell right of it is taken)."""
    a_fine = np.asarray(a_fine, dtype=float)
    r = grid_ratio(a_fine.shape[-1], n_coarse)
    blocks = a_fine.reshape(*a_fine.shape[:-1], n_coarse, r)
    if how == "harmonic":
        return 1.0 / np.mean(1.0 / blocks, axis=-1)
    if how == "arithmetic":
        return blocks.mean(axis=-1)
    if how == "sample":
        return blocks[..., r // 2].copy()
    raise ValueError(f"unknown restriction {how!r} (harmonic, arithmetic, sample)")


def interpolate_dirichlet_cells(u_coarse: np.ndarray, n_fine: int, how: str = "linear") -> np.ndarray:
    """Cell-centre values on ``n_coarse`` cells -> values at the centres of ``n_fine`` cells.

    ``linear``: piecewise linear through the coarse centres and the boundary values
    ``u(0) = u(1) = 0`` (done with odd ghost values ``-u_0``, ``-u_{n-1}`` one cell outside,
    whose line crosses zero exactly on the boundary); ``constant``: the value of the coarse
    cell holding the fine centre.  Any ``n_fine`` (not only multiples)."""
    u = np.asarray(u_coarse, dtype=float)
    n_c = u.shape[-1]
    xf = cell_centres(int(n_fine))
    if how == "constant":
        return u[..., np.minimum((xf * n_c).astype(int), n_c - 1)]
    if how != "linear":
        raise ValueError(f"unknown interpolation {how!r} (linear, constant)")
    ext = np.concatenate([-u[..., :1], u, -u[..., -1:]], axis=-1)  # positions -1 .. n_c
    p = xf * n_c - 0.5  # coarse-index coordinate of the fine centres, in (-1/2, n_c - 1/2)
    left = np.floor(p).astype(int)
    w = p - left
    return ext[..., left + 1] * (1.0 - w) + ext[..., left + 2] * w


# ----------------------------------------------------------------------------- periodic nodes


def restrict_periodic_nodes(v_fine: np.ndarray, n_coarse: int, how: str = "sample") -> np.ndarray:
    """Values on ``n_coarse`` points ``j / n_coarse`` from ``n_fine`` (a multiple) points.

    ``sample``: the fine values at the coarse points (they are a subset); ``average``: the
    periodic cell average over ``[x_j - H/2, x_j + H/2]`` by the trapezoid rule on the fine
    points (half weights on the two end points for an even ratio); ``fourier``: the fine
    grid's trigonometric interpolant truncated to the modes the coarse grid holds (the
    inverse of :func:`interpolate_periodic_nodes`)."""
    v = np.asarray(v_fine, dtype=float)
    n_f = v.shape[-1]
    r = grid_ratio(n_f, n_coarse)
    if how == "sample":
        return v[..., ::r].copy()
    if how == "average":
        half = r // 2
        acc = np.zeros_like(v)
        for s in range(-half, half + 1):
            w = 0.5 if (r % 2 == 0 and abs(s) == half) else 1.0
            acc += w * np.roll(v, -s, axis=-1)
        return acc[..., ::r] / r
    if how == "fourier":
        spec = np.fft.rfft(v, axis=-1)[..., : n_coarse // 2 + 1] * (n_coarse / n_f)
        if n_coarse % 2 == 0 and r > 1:
            spec[..., -1] = 2.0 * spec[..., -1].real
        return np.fft.irfft(spec, n=n_coarse, axis=-1)
    raise ValueError(f"unknown restriction {how!r} (sample, average, fourier)")


def interpolate_periodic_nodes(u_coarse: np.ndarray, n_fine: int, how: str = "spectral") -> np.ndarray:
    """Periodic values on ``n_coarse`` points -> ``n_fine >= n_coarse`` points, by FFT
    zero-padding (the trigonometric interpolant; an even grid's Nyquist coefficient is split
    evenly between ``±n_coarse / 2``, so the result is real and reproduces the coarse
    values).  Exact for trigonometric polynomials of degree ``< n_coarse / 2``."""
    if how != "spectral":
        raise ValueError(f"unknown interpolation {how!r} (spectral)")
    u = np.asarray(u_coarse, dtype=float)
    n_c, n_f = u.shape[-1], int(n_fine)
    if n_f < n_c:
        raise ValueError(f"n_fine={n_f} is smaller than n_coarse={n_c}")
    if n_f == n_c:
        return u.copy()
    spec = np.fft.rfft(u, axis=-1) * (n_f / n_c)
    if n_c % 2 == 0:
        spec[..., -1] *= 0.5
    pad = np.zeros((*u.shape[:-1], n_f // 2 + 1), dtype=complex)
    pad[..., : spec.shape[-1]] = spec
    return np.fft.irfft(pad, n=n_f, axis=-1)


# ----------------------------------------------------------------------------- any grid kind


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
            return interpolate_periodic_nodes(u, m)
        return restrict_periodic_nodes(u, m, how="fourier")
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
        return interpolate_dirichlet_cells(u, int(n_out), how=how)
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
        return restrict_dirichlet_cells(u, int(n_out), how=how)
    if grid == "periodic_nodes":
        return restrict_periodic_nodes(u, int(n_out), how="fourier" if how == "spectral" else how)
    r = grid_ratio(u.shape[-1], int(n_out))
    if how == "average":
        return u.reshape(*u.shape[:-1], int(n_out), r).mean(axis=-1)
    return fourier_resample(u, n_out, _OFFSET[grid])


__all__ = ["cell_centres", "periodic_points", "grid_ratio", "restrict_dirichlet_cells",
           "interpolate_dirichlet_cells", "restrict_periodic_nodes", "interpolate_periodic_nodes", "GRID_KINDS", "INTERPOLATIONS", "RESTRICTIONS", "DEFAULT_INTERPOLATION", "DEFAULT_RESTRICTION",
           "fourier_resample", "interpolate", "restrict"]
