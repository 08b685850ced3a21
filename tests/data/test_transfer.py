"""Grid transfer between levels: exact for band-limited (spectral) and linear (linear) fields."""

from __future__ import annotations

import numpy as np
import pytest

from lemon_pl.data.transfer import fourier_resample, interpolate, restrict

OFFSET = {"periodic_nodes": 0.0, "periodic_cells": 0.5}


def _trig(x, rng, degree):
    """A random real trigonometric polynomial of the given degree on the unit period."""
    out = np.full_like(x, rng.normal())
    for k in range(1, degree + 1):
        out += rng.normal() * np.cos(2 * np.pi * k * x) + rng.normal() * np.sin(2 * np.pi * k * x)
    return out


@pytest.mark.parametrize("grid", ["periodic_nodes", "periodic_cells"])
@pytest.mark.parametrize("n,m", [(16, 64), (32, 256), (64, 16), (32, 48)])
def test_spectral_transfer_is_exact_for_band_limited_fields(grid, n, m):
    o = OFFSET[grid]
    degree = min(n, m) // 2 - 1  # below the smaller grid's Nyquist mode
    x, y = (np.arange(n) + o) / n, (np.arange(m) + o) / m
    u, v = _trig(x, np.random.default_rng(n), degree), _trig(y, np.random.default_rng(n), degree)
    # the same seed: the same random polynomial on both grids
    np.testing.assert_allclose(fourier_resample(u, m, o), v, atol=1e-10)
    if m > n:
        np.testing.assert_allclose(interpolate(u, m, grid, "spectral"), v, atol=1e-10)


def test_spectral_restriction_of_cells_is_exact_and_inverts_interpolation():
    rng = np.random.default_rng(0)
    xf, xc = (np.arange(128) + 0.5) / 128, (np.arange(32) + 0.5) / 32
    f = _trig(xf, np.random.default_rng(3), 15)
    np.testing.assert_allclose(restrict(f, 32, "periodic_cells", "spectral"), _trig(xc, np.random.default_rng(3), 15),
                               atol=1e-10)
    u = rng.normal(size=(5, 32))
    up = interpolate(u, 128, "periodic_cells", "spectral")
    back = restrict(up, 32, "periodic_cells", "spectral")
    # everything but the dropped Nyquist mode of the 32-point grid comes back exactly
    spec_u, spec_b = np.fft.rfft(u, axis=-1), np.fft.rfft(back, axis=-1)
    np.testing.assert_allclose(spec_b[:, :16], spec_u[:, :16], atol=1e-9)


def test_average_restriction_is_the_cell_average():
    # cell averages of sin(2 pi x) on 64 cells, exact; their 4-cell means are the exact 16-cell averages
    def cell_avg(n):
        a, b = np.arange(n) / n, (np.arange(n) + 1) / n
        return (np.cos(2 * np.pi * a) - np.cos(2 * np.pi * b)) / (2 * np.pi) * n

    np.testing.assert_allclose(restrict(cell_avg(64), 16, "periodic_cells", "average"), cell_avg(16), atol=1e-13)


def test_linear_interpolation_is_exact_for_linear_fields():
    # periodic cells: a linear function between coarse centres is reproduced away from the wrap
    xc, xf = (np.arange(16) + 0.5) / 16, (np.arange(64) + 0.5) / 64
    got = interpolate(3 * xc + 1, 64, "periodic_cells", "linear")
    inside = (xf > xc[0]) & (xf < xc[-1])
    np.testing.assert_allclose(got[inside], 3 * xf[inside] + 1, atol=1e-12)
    # Dirichlet cells: a hat vanishing at both ends with its kink on a coarse centre
    x0 = xc[7]
    hat = lambda x: np.minimum(x / x0, (1 - x) / (1 - x0))  # noqa: E731
    got = interpolate(hat(xc), 64, "dirichlet_cells", "linear")
    np.testing.assert_allclose(got, hat(xf), atol=1e-12)


@pytest.mark.parametrize("grid,how", [("periodic_cells", "harmonic"), ("dirichlet_cells", "spectral"),
                                      ("nowhere", "linear")])
def test_unknown_combinations_are_refused(grid, how):
    with pytest.raises(ValueError, match="unknown"):
        restrict(np.ones(16), 8, grid, how)


def test_the_map_problems_move_their_fields_with_these_functions():
    from lemon_pl.data.transfer import (interpolate_dirichlet_cells, interpolate_periodic_nodes,
                                        restrict_dirichlet_cells, restrict_periodic_nodes)
    from lemon_pl.multilevel.problems import RoughElliptic, SchrodingerGroundState

    assert RoughElliptic.restrict is restrict_dirichlet_cells and RoughElliptic.interpolate is interpolate_dirichlet_cells
    assert (SchrodingerGroundState.restrict is restrict_periodic_nodes
            and SchrodingerGroundState.interpolate is interpolate_periodic_nodes)


@pytest.mark.parametrize("n, m", [(16, 64), (15, 45), (32, 64)])
def test_node_interpolation_then_restriction_gives_the_coarse_values_back(n, m):
    """The trigonometric interpolant passes through the coarse points (``sample``) and holds exactly their
    modes (``fourier``, the Nyquist coefficient split and folded back), so both restrictions invert it."""
    from lemon_pl.data.transfer import interpolate_periodic_nodes, restrict_periodic_nodes

    u = np.random.default_rng(n).normal(size=(3, n))
    fine = interpolate_periodic_nodes(u, m)
    np.testing.assert_allclose(restrict_periodic_nodes(fine, n, "sample"), u, atol=1e-12)
    np.testing.assert_allclose(restrict_periodic_nodes(fine, n, "fourier"), u, atol=1e-12)


@pytest.mark.parametrize("how", ["harmonic", "arithmetic", "sample"])
def test_cell_constant_interpolation_then_any_restriction_is_the_identity(how):
    """A coarse cell's value copied to its fine cells (``constant``) is what every cell restriction of
    those fine cells gives back; the harmonic mean of a cell that is not constant is 1 / mean(1 / a)."""
    from lemon_pl.data.transfer import interpolate_dirichlet_cells, restrict_dirichlet_cells

    a = np.exp(np.random.default_rng(1).normal(size=(2, 16)))
    np.testing.assert_allclose(restrict_dirichlet_cells(interpolate_dirichlet_cells(a, 64, "constant"), 16, how), a,
                               rtol=1e-14)
    fine = np.array([1.0, 2.0, 4.0, 4.0])
    assert restrict_dirichlet_cells(fine, 1, "harmonic")[0] == pytest.approx(1 / np.mean(1 / fine), rel=1e-15)
