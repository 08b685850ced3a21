"""Two solution-map problems for multi-level fine-tuning, with solvers at any grid resolution.

Both problems expose the same small interface, all numpy arrays with the grid on the last axis
(a leading batch axis is optional unless a name says ``batch``):

* ``sample_inputs(rng, n_fine, size=None)``: inputs on the finest grid (the default sampler);
* ``restrict(inputs_fine, n_coarse, how=...)``: the inputs on a coarser grid of the same domain;
* ``solve_batch(inputs)``: labels ``(B, n)`` for inputs ``(B, n)``, the cost that a level's
  sample costs (see ``measure_cost``);
* ``interpolate(labels_coarse, n_fine, how=...)``: coarse labels on the finer grid, so that all
  levels train one network with the fine grid's output size.

``RoughElliptic`` is ``a -> u`` for ``-(a u')' = f`` on (0, 1), ``u(0) = u(1) = 0``, cell-centred
finite volumes on ``n`` cells (centres ``(i + 1/2) / n``).  ``SchrodingerGroundState`` is ``V ->
u`` for the lowest eigenpair of ``-1/2 u'' + V u = E u`` on the periodic [0, 1) (points ``j /
n``), second-order finite differences, ``sum(u**2) / n = 1`` and ``u > 0``.

Measured costs (``measure_cost``, batch 64, one thread, this repository's 2-core CPU with another
job running, so ±30 %; ms per sample at n = 32 / 64 / 128 / 256): elliptic 0.002-0.004 /
0.003-0.005 / 0.005-0.007 / 0.008-0.010 (O(n) plus call overhead: far flatter than the ``n**2``
cost model of the probe in the reference notes); Schrödinger 0.12-0.22 / 0.26-0.38 / 0.75-0.97
(dense ``eigh`` of the lowest pair) / 1.7-2.4 (shift-invert ``eigsh``).  Use measured costs, not
a cost model, when splitting a budget across levels.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from lemon_pl.data.transfer import (cell_centres, interpolate_dirichlet_cells, interpolate_periodic_nodes,
                                     periodic_points, restrict_dirichlet_cells, restrict_periodic_nodes)

Rng = Union[np.random.Generator, int, None]
Source = Union[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]


def _rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# -(a u')' = f on (0, 1), u(0) = u(1) = 0
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoughElliptic:
    """``a -> u`` for ``-(a u')' = f`` on (0, 1), ``u(0) = u(1) = 0``; cell-centred finite volumes.

    Sampler parameters (``sample_coefficient``): ``a = exp(g) * J(x)`` with ``g`` a Gaussian
    random field of pointwise variance ``variance``, Matérn-type spectrum of correlation length
    ``corr_length`` and smoothness ``smoothness`` (1/2: exponential covariance, continuous but
    rough), and ``J`` a piecewise-constant jump: 1 left of a uniform location in ``jump_range``,
    ``jump`` or ``1 / jump`` (even odds) right of it.
    """

    corr_length: float = 0.1
    variance: float = 1.0
    smoothness: float = 0.5
    jump: float = 10.0
    jump_range: tuple[float, float] = (0.25, 0.75)

    # ---- inputs ------------------------------------------------------------------------------

    def sample_coefficient(self, rng: Rng, n_fine: int, size: int | None = None) -> np.ndarray:
        """Coefficients on ``n_fine`` cells (cell values), ``(n_fine,)`` or ``(size, n_fine)``.

        The field ``g`` is a random Fourier sum ``sum_k sqrt(lam_k) (xi_k cos(pi k x) + eta_k
        sin(pi k x))`` of period 2 (so ``a(0)`` and ``a(1)`` are not tied together), ``k = 1 ..
        n_fine - 1``, evaluated exactly at the cell centres with one inverse real FFT on ``2 *
        n_fine`` points (a half-cell phase shift puts the FFT's points on the centres), ``lam_k
        ∝ (1 + (pi k l)**2 / (2 nu))**-(nu + 1/2)`` normalised to ``sum lam_k = variance``.  The
        jump sits at a fine cell face (cells whose centre is right of the location get ``J``).
        Deterministic for a seed; the coefficient is defined on the fine grid (coarse ones come
        from ``restrict``)."""
        rng = _rng(rng)
        batch = 1 if size is None else int(size)
        n = int(n_fine)
        big = 2 * n
        k = np.arange(1, n)
        nu, ell = self.smoothness, self.corr_length
        lam = (1.0 + (np.pi * k * ell) ** 2 / (2.0 * nu)) ** (-(nu + 0.5))
        lam *= self.variance / lam.sum()
        xi = rng.standard_normal((batch, n - 1))
        eta = rng.standard_normal((batch, n - 1))
        spec = np.zeros((batch, n + 1), dtype=complex)
        # irfft(X)[j] = (1/N) (X_0 + 2 Re sum_k X_k e^{2 pi i k j / N} + ...), N = 2n, and
        # x_j = (j + 1/2) / n gives pi k x_j = 2 pi k j / N + pi k / (2 n).
        spec[:, 1:n] = (big / 2) * np.sqrt(lam) * (xi - 1j * eta) * np.exp(1j * np.pi * k / big)
        g = np.fft.irfft(spec, n=big, axis=-1)[:, :n]
        loc = rng.uniform(*self.jump_range, size=(batch, 1))
        side = np.where(rng.random((batch, 1)) < 0.5, 1.0, -1.0)
        factor = np.where(cell_centres(n)[None, :] > loc, self.jump ** side, 1.0)
        a = np.exp(g) * factor
        return a[0] if size is None else a

    sample_inputs = sample_coefficient

    #: ``restrict(a_fine, n_coarse, how="harmonic")``: cell coefficients on a coarser grid
    #: (:func:`lemon_pl.data.transfer.restrict_dirichlet_cells`: harmonic, arithmetic, sample)
    restrict = staticmethod(restrict_dirichlet_cells)

    # ---- solve -------------------------------------------------------------------------------

    @staticmethod
    def _source(f: Source, shape: tuple[int, int]) -> np.ndarray:
        if callable(f):
            f = f(cell_centres(shape[-1]))
        return np.broadcast_to(np.asarray(f, dtype=float), shape)

    @classmethod
    def solve_batch(cls, a_batch: np.ndarray, f: Source = 1.0) -> np.ndarray:
        """Cell-centre values ``u (B, n)`` for coefficients ``a_batch (B, n)``.

        Cell ``i`` balances ``T_{i-1/2} (u_i - u_{i-1}) + T_{i+1/2} (u_i - u_{i+1}) = h f_i``
        with face transmissibilities ``T = harmonic_mean(a_i, a_{i+1}) / h`` inside and ``T =
        a_cell / (h / 2)`` at the two boundary faces (ghost value 0 on the boundary);
        ``f`` is a scalar, cell values ``(n,)`` / ``(B, n)`` or a function of the centres.
        Second-order accurate, also across a jump of ``a`` at a cell face.

        Solver choice: the matrix is a symmetric positive definite tridiagonal M-matrix, so
        LAPACK ``?ptsv`` (``scipy.linalg.solveh_banded``, an ``O(n)`` LDLᵀ without pivoting) is
        the right routine.  The ``B`` systems are stacked into one block-diagonal tridiagonal
        system of size ``B n`` (zero couplings between blocks, so the blocks do not interact)
        and solved in one call: the cost is the honest ``O(B n)`` of the elimination, without a
        Python loop over samples or grid points.  Measured (B = 64, one thread): 1.7 - 8 µs
        per sample for n = 32 - 256, against 50 - 80 µs for a loop of ``solve_banded`` calls,
        whose per-call overhead would dominate the measured cost."""
        a = np.asarray(a_batch, dtype=float)
        if a.ndim != 2:
            raise ValueError(f"a_batch must be (B, n), got shape {a.shape}")
        if not (np.all(np.isfinite(a)) and np.all(a > 0)):
            raise ValueError("the coefficient must be finite and positive")
        batch, n = a.shape
        h = 1.0 / n
        trans = np.empty((batch, n + 1))
        trans[:, 1:-1] = 2.0 * a[:, :-1] * a[:, 1:] / (a[:, :-1] + a[:, 1:]) / h
        trans[:, 0] = 2.0 * a[:, 0] / h
        trans[:, -1] = 2.0 * a[:, -1] / h
        ab = np.zeros((2, batch * n))  # upper form: ab[0, 1:] superdiagonal, ab[1] diagonal
        ab[1] = ((trans[:, :-1] + trans[:, 1:]) / h).ravel()
        upper = np.zeros((batch, n))
        upper[:, 1:] = -trans[:, 1:-1] / h  # coupling (i-1, i); 0 at each block's first row
        ab[0] = upper.ravel()
        rhs = np.ascontiguousarray(cls._source(f, (batch, n))).ravel()
        u = scipy.linalg.solveh_banded(ab, rhs, lower=False, overwrite_ab=True,
                                       check_finite=False)
        return u.reshape(batch, n)

    @classmethod
    def solve(cls, a_cells: np.ndarray, f: Source = 1.0) -> np.ndarray:
        """Cell-centre values ``u (n,)`` for one coefficient ``a_cells (n,)`` (``solve_batch``)."""
        a = np.asarray(a_cells, dtype=float)
        if a.ndim != 1:
            raise ValueError(f"a_cells must be (n,), got shape {a.shape}")
        f_arr = f if callable(f) else np.asarray(f, dtype=float)
        return cls.solve_batch(a[None], f_arr)[0]

    # ---- labels across levels ----------------------------------------------------------------

    #: ``interpolate(u_coarse, n_fine, how="linear")``: labels on a finer grid with ``u = 0`` at
    #: both ends (:func:`lemon_pl.data.transfer.interpolate_dirichlet_cells`: linear, constant)
    interpolate = staticmethod(interpolate_dirichlet_cells)


# --------------------------------------------------------------------------------------------
# -1/2 u'' + V u = E u on the periodic [0, 1)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _kinetic_dense(n: int) -> np.ndarray:
    """``-1/2`` times the periodic second-difference matrix on ``n`` points of [0, 1)."""
    h2 = (1.0 / n) ** 2
    k = np.zeros((n, n))
    idx = np.arange(n)
    k[idx, idx] = 1.0 / h2
    k[idx, (idx + 1) % n] -= 0.5 / h2
    k[idx, (idx - 1) % n] -= 0.5 / h2
    k.setflags(write=False)
    return k


@functools.lru_cache(maxsize=32)
def _kinetic_sparse(n: int) -> scipy.sparse.csc_matrix:
    return scipy.sparse.csc_matrix(_kinetic_dense(n))


@dataclass(frozen=True)
class SchrodingerGroundState:
    """``V -> u`` for the ground state of ``-1/2 u'' + V u = E u`` on the periodic [0, 1).

    Domain choice: [0, 1) with period 1, so a constant potential has the normalised ground
    state ``u ≡ 1`` (``sum(u**2) h = 1``, ``h = 1 / n``) and ``E`` equal to the constant; grid
    points ``j / n``.  The finite-difference Hamiltonian has off-diagonals ``-1 / (2 h**2) < 0``
    and a connected (cyclic) pattern, so by Perron-Frobenius its lowest eigenvalue is simple and
    the eigenvector has one sign: the sign is fixed by ``u > 0`` (no node).

    Sampler parameters: ``rough_*`` for ``kind="rough"`` (random Fourier series with ``modes``
    terms and coefficients decaying like ``k**-decay``, pointwise standard deviation
    ``amplitude``), ``osc_*`` for ``kind="oscillatory"`` (``terms`` cosines with integer
    wavenumbers drawn in ``wavenumbers``, amplitudes uniform in ``[amplitude / 2, amplitude]``,
    random phases), ``piece_*`` for ``kind="piecewise"`` (piecewise constant with a random number
    of pieces in ``pieces``, random breakpoints, values uniform in ``[-amplitude, amplitude]``).
    """

    rough_amplitude: float = 20.0
    rough_decay: float = 1.0
    rough_modes: int = 32
    osc_amplitude: float = 20.0
    osc_terms: int = 3
    osc_wavenumbers: tuple[int, int] = (8, 32)
    piece_amplitude: float = 20.0
    piece_pieces: tuple[int, int] = (2, 6)
    default_kind: str = "rough"
    dense_max_n: int = 192

    # ---- inputs ------------------------------------------------------------------------------

    def sample_potential(self, rng: Rng, n: int, size: int | None = None,
                         kind: str | None = None) -> np.ndarray:
        """Potentials at the points ``j / n``, ``(n,)`` or ``(size, n)``; exact point values.

        Every potential is a periodic function of x whose random parameters do not depend on
        ``n``, so one seed gives the same function at every resolution."""
        rng = _rng(rng)
        kind = kind or self.default_kind
        batch = 1 if size is None else int(size)
        x = periodic_points(int(n))
        if kind == "rough":
            k = np.arange(1, self.rough_modes + 1)
            c = k ** (-float(self.rough_decay))
            c *= self.rough_amplitude / np.sqrt(np.sum(c ** 2))
            xi = rng.standard_normal((batch, k.size)) * c
            eta = rng.standard_normal((batch, k.size)) * c
            arg = 2 * np.pi * np.outer(k, x)
            v = xi @ np.cos(arg) + eta @ np.sin(arg)
        elif kind == "oscillatory":
            lo, hi = self.osc_wavenumbers
            k = rng.integers(lo, hi + 1, size=(batch, self.osc_terms, 1))
            amp = rng.uniform(0.5, 1.0, size=(batch, self.osc_terms, 1)) * self.osc_amplitude
            phase = rng.uniform(0.0, 2 * np.pi, size=(batch, self.osc_terms, 1))
            v = np.sum(amp * np.cos(2 * np.pi * k * x + phase), axis=1)
        elif kind == "piecewise":
            lo, hi = self.piece_pieces
            m = hi
            count = rng.integers(lo, hi + 1, size=batch)
            breaks = np.sort(rng.random((batch, m)), axis=1)
            breaks[np.arange(m)[None, :] >= count[:, None]] = 2.0  # unused breakpoints
            values = rng.uniform(-self.piece_amplitude, self.piece_amplitude, size=(batch, m))
            # piece index of x: number of breakpoints <= x (mod count: the last piece wraps
            # around to the first, so the function is periodic)
            piece = np.sum(breaks[:, None, :] <= x[None, :, None], axis=-1) % count[:, None]
            v = np.take_along_axis(values, piece, axis=1)
        else:
            raise ValueError(f"unknown potential kind {kind!r} (rough, oscillatory, piecewise)")
        return v[0] if size is None else v

    def sample_inputs(self, rng: Rng, n_fine: int, size: int | None = None) -> np.ndarray:
        return self.sample_potential(rng, n_fine, size, kind=self.default_kind)

    #: ``restrict(v_fine, n_coarse, how="sample")``: the potential on a coarser grid
    #: (:func:`lemon_pl.data.transfer.restrict_periodic_nodes`: sample, average, fourier)
    restrict = staticmethod(restrict_periodic_nodes)

    # ---- solve -------------------------------------------------------------------------------

    def hamiltonian(self, v: np.ndarray) -> np.ndarray:
        """Dense ``-1/2 D2 + diag(V)`` for one potential ``(n,)``."""
        v = np.asarray(v, dtype=float)
        h = _kinetic_dense(v.size).copy()
        h[np.diag_indices(v.size)] += v
        return h

    def _lowest(self, v: np.ndarray, method: str) -> tuple[float, np.ndarray]:
        n = v.size
        if method == "auto":
            method = "dense" if n <= self.dense_max_n else "eigsh"
        if method == "dense":
            w, vec = scipy.linalg.eigh(self.hamiltonian(v), subset_by_index=[0, 0],
                                       driver="evr", check_finite=False)
            return float(w[0]), vec[:, 0]
        if method == "eigsh":
            ham = (_kinetic_sparse(n) + scipy.sparse.diags(v)).tocsc()
            # E_0 >= min V (the kinetic part is positive semi-definite), so a shift below min V
            # makes E_0 the eigenvalue nearest the shift; a positive start vector overlaps the
            # (positive) ground state and makes the result deterministic.
            w, vec = scipy.sparse.linalg.eigsh(ham, k=1, sigma=float(v.min()) - 1.0,
                                               which="LM", v0=np.ones(n), tol=1e-12)
            return float(w[0]), vec[:, 0]
        raise ValueError(f"unknown eigen-solver {method!r} (auto, dense, eigsh)")

    def solve_batch(self, v_batch: np.ndarray, return_energy: bool = False,
                    method: str = "auto"):
        """Ground states ``u (B, n)`` (and energies ``E (B,)`` with ``return_energy``).

        ``u`` is normalised to ``sum(u**2) / n = 1`` and has positive sum (it is positive).

        Solver choice, measured (batch 64, one thread, ms per sample, n = 32 / 64 / 128 / 256 /
        512): ``scipy.linalg.eigh(H, subset_by_index=[0, 0])`` (LAPACK ``?syevr``, only the
        lowest pair) 0.12 / 0.26 / 0.75 / 3.4 / 15; ``numpy.linalg.eigh`` on the whole stack
        (all pairs) 0.15 / 0.58 / 2.1 / 9.7 / 57; ``scipy.sparse.linalg.eigsh`` with shift-invert
        (``sigma`` below ``min V``) 2.3 / 2.7 / 2.6 / 2.9 / 2.2 (dominated by ARPACK and
        factorisation overhead; a second run at n = 128 / 160 / 192 / 256 gave dense 0.8 / 1.4
        / 2.0 / 3.7 and eigsh 2.7 / 2.9 / 2.5 / 1.7).  The periodic FD matrix has corner
        entries, so LAPACK's tridiagonal eigen-solvers do not apply.  ``method="auto"`` takes
        the dense subset solve up to ``dense_max_n`` (192; the crossover lies between 192 and
        256) and ``eigsh`` above, so a 256-point level is solved by ``eigsh``.  The loop over
        samples is in Python; each iteration is one LAPACK / ARPACK call, whose cost dominates."""
        v = np.asarray(v_batch, dtype=float)
        if v.ndim != 2:
            raise ValueError(f"v_batch must be (B, n), got shape {v.shape}")
        batch, n = v.shape
        u = np.empty((batch, n))
        energy = np.empty(batch)
        for b in range(batch):
            energy[b], vec = self._lowest(v[b], method)
            if vec.sum() < 0:
                vec = -vec
            u[b] = vec * np.sqrt(n / np.sum(vec ** 2))
        return (u, energy) if return_energy else u

    def solve(self, v: np.ndarray, return_energy: bool = False, method: str = "auto"):
        """Ground state ``u (n,)`` (and ``E``) for one potential ``(n,)`` (see ``solve_batch``)."""
        v = np.asarray(v, dtype=float)
        if v.ndim != 1:
            raise ValueError(f"v must be (n,), got shape {v.shape}")
        u, e = self.solve_batch(v[None], return_energy=True, method=method)
        return (u[0], float(e[0])) if return_energy else u[0]

    # ---- labels across levels ----------------------------------------------------------------

    #: ``interpolate(u_coarse, n_fine, how="spectral")``: labels on a finer grid by FFT zero-padding
    #: (:func:`lemon_pl.data.transfer.interpolate_periodic_nodes`); the normalisation
    #: ``sum(u**2) h = 1`` holds up to the (small) Nyquist content
    interpolate = staticmethod(interpolate_periodic_nodes)


# --------------------------------------------------------------------------------------------
# the measured-cost hook
# --------------------------------------------------------------------------------------------


def measure_cost(problem, n: int, batch: int = 64, repeats: int = 3, seed: int = 0) -> float:
    """Seconds per sample of ``problem.solve_batch`` on ``batch`` inputs sampled at ``n``.

    The best of ``repeats`` timings (``time.perf_counter``) of one batched solve, divided by
    ``batch``; sampling is not timed.  The number depends on the BLAS/LAPACK thread count (set
    ``OMP_NUM_THREADS`` and friends before numpy is imported to compare levels fairly)."""
    inputs = problem.sample_inputs(np.random.default_rng(seed), n, size=batch)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        problem.solve_batch(inputs)
        best = min(best, time.perf_counter() - start)
    return best / batch
