"""Hyper-LR-PINN's 1-D convection-diffusion-reaction problem and its verified references.

u_t + beta u_x - nu u_xx - rho u (1 - u) = 0 on x in [0, 2pi) (periodic), t in [0, 1]; the
initial conditions of the release (``CDR_ICS``) and the parameter sets of the paper's tables
(``CDR_PRESETS``). Conditions: ``residual`` (interior), ``ic`` (u = u0 at t = 0), ``bc``
(periodic pairs u(0, t) = u(2pi, t)). The reaction-diffusion reference (nu, rho > 0) is the data
engine's Strang splitter (:func:`lemon_pl.data.solvers.strang_splitting`) with the exact logistic
flow and the exact Fourier diffusion plugged in.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from lemon_pl.data.solvers import strang_splitting
from lemon_pl.pinn.conditions import Condition, initial, periodic_pairs, residual, value
from lemon_pl.pinn.derivatives import grad, partial
from lemon_pl.pinn.problems.base import Domain, Mu, Param, Problem, lib

TWO_PI = 2 * math.pi


def _one_plus_sin(x):
    return 1 + lib(x).sin(x)


def _gaussian(sigma: float):
    def u0(x):
        return lib(x).exp(-((x - math.pi) ** 2) / (2 * sigma**2))

    return u0


#: Hyper-LR-PINN's initial conditions on [0, 2pi), by the release's keys (pinn-methods.md §1).
CDR_ICS: dict[str, Callable] = {
    "1+sin": _one_plus_sin,
    "gauss_pi_2": _gaussian(math.pi / 2),  # N(pi, (pi/2)^2), unnormalised, peak 1 (Table 4)
    "gauss": _gaussian(math.pi / 4),  # sigma = pi/4
}

#: Parameter sets of the paper's tables: (IC, values of beta, nu, rho); the Cartesian product.
CDR_PRESETS: dict[str, tuple[str, tuple[tuple[float, ...], ...]]] = {
    "table2_convection": ("1+sin", (tuple(range(30, 41)), (0,), (0,))),
    "table4_convection": ("gauss_pi_2", (tuple(range(1, 6)), (0,), (0,))),
    "table4_reaction": ("gauss_pi_2", ((0,), (0,), tuple(range(1, 6)))),
    "table4_cdr": ("gauss_pi_2", (tuple(range(1, 6)),) * 3),  # which combinations: UNVERIFIED
}


def logistic(u0, rate_t):
    """Exact flow of u' = rho u (1 - u) after time t, with ``rate_t`` = rho t (numpy or torch)."""
    if isinstance(rate_t, Tensor):
        e = torch.exp(-rate_t)
    else:
        e = math.exp(-rate_t) if np.isscalar(rate_t) else np.exp(-rate_t)
    return u0 / (u0 + (1 - u0) * e)


def strang_reaction_diffusion(w0: np.ndarray, t: np.ndarray, nu: float, rho: float,
                              max_dt: float) -> np.ndarray:
    """w_t = nu w_xx + rho w (1 - w) on the periodic grid of ``w0`` (n,) over [0, 2pi).

    Strang splitting R(h/2) D(h) R(h/2) (:func:`lemon_pl.data.solvers.strang_splitting`) with
    both sub-flows exact: D is the Fourier propagator exp(-nu k^2 h), R the logistic closed form.
    Second order in h; the interval between consecutive output times is cut into equal steps
    <= ``max_dt``, so the steps land exactly on every entry of ``t`` (which must start at 0 and
    increase). Returns the Fourier coefficients ``rfft(w)`` at every output time, (nt, n // 2 + 1).
    """
    t = np.asarray(t, dtype=np.float64)
    if t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError("output times must start at 0 and increase")
    n = w0.size
    k2 = np.arange(n // 2 + 1, dtype=np.float64) ** 2

    def substeps(h: float):
        prop = np.exp(-nu * k2 * h)
        return (lambda w: logistic(w, 0.5 * rho * h)), (lambda w: np.fft.irfft(np.fft.rfft(w) * prop, n=n))

    w = strang_splitting(np.asarray(w0, dtype=np.float64).copy(), t, max_dt, substeps)
    return np.fft.rfft(w, axis=-1)


def _mode_weights(n: int) -> np.ndarray:
    """Weights of the real trigonometric interpolant sum_k w_k Re(c_k e^{ikx}) / n (rfft bins)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0  # Nyquist: real part only, as irfft does
    return w / n


def _is_standard_grid(x: np.ndarray) -> bool:
    n = x.size
    return n >= 4 and np.allclose(x, TWO_PI * np.arange(n) / n, rtol=0, atol=1e-12)


class ConvectionDiffusionReaction(Problem):
    """u_t + beta u_x - nu u_xx - rho u (1 - u) = 0, x in [0, 2pi) periodic, t in [0, 1].

    Sign convention and logistic reaction as in Hyper-LR-PINN (pinn-methods.md §1): convection
    to the right at speed beta, diffusion nu >= 0, logistic growth rho (u = 0 and u = 1 are its
    fixed points). Parameters are integers in the paper ([P] fn. 5); the ranges below span its
    experiments (Table 2: beta in 30..40; Table 4: 1..5) and are not enforced. ICs
    (``CDR_ICS``): ``1 + sin x``; ``gauss_pi_2`` = exp(-(x - pi)^2 / (2 (pi/2)^2)) (peak 1,
    unnormalised); ``gauss`` the same with sigma = pi/4. The Gaussians are not periodic: their
    periodic extension has a slope jump at x = 0 (0.34 for sigma = pi/2, 3.4e-3 for pi/4),
    and the references solve for that periodic extension. Boundary: periodic, u(0, t) =
    u(2pi, t) (values; the failure-modes code also matches u_x when nu != 0).

    References (float64, exact where possible):

    * nu = 0 (convection, reaction, or both): exact, u = logistic(u0((x - beta t) mod 2pi), rho t)
      at any points;
    * rho = 0, nu > 0: the exact Fourier propagator exp((-nu k^2 - i beta k) t) of the IC's
      samples on a uniform grid;
    * nu, rho > 0: Strang splitting of reaction-diffusion in the frame moving with speed beta
      (convection commutes with both, so it is applied exactly at the end as a Fourier phase);
      its steps land on the requested times, second order in ``max_dt``.

    Off the uniform grid x_j = 2pi j / n the spectral solutions are evaluated by their
    trigonometric interpolant computed on ``nx`` points.
    """

    name = "cdr"
    domain = Domain(("x", "t"), ((0.0, TWO_PI), (0.0, 1.0)), (True, False), time="t")
    params = (Param("beta", low=0.0, high=40.0, step=1.0, default=1.0), Param("nu", low=0.0, high=5.0, step=1.0, default=1.0),
              Param("rho", low=0.0, high=5.0, step=1.0, default=1.0))
    default_grid = (256, 100)
    presets = {name: ({"ic": ic}, axes) for name, (ic, axes) in CDR_PRESETS.items()}
    max_dt = 1e-3  # default splitting step

    def __init__(self, ic: str = "1+sin"):
        if ic not in CDR_ICS:
            raise ValueError(f"data.init_args.problem.init_args.ic: unknown IC {ic!r}; choose from {sorted(CDR_ICS)}")
        self.ic = ic
        self._u0 = CDR_ICS[ic]

    def conditions(self) -> dict[str, Condition]:
        """The residual in the interior, u = u0 at t = 0, periodic pairs in x (values)."""
        return {"residual": residual(),
                "ic": value(initial(), lambda mu, points: np.asarray(self._u0(points[:, 0]), dtype=np.float64)),
                "bc": periodic_pairs("x")}

    @classmethod
    def preset(cls, name: str) -> tuple["ConvectionDiffusionReaction", np.ndarray]:
        """The problem and the parameter values (M, 3) of one of ``CDR_PRESETS``."""
        if name not in CDR_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(CDR_PRESETS)}")
        ic, axes = CDR_PRESETS[name]
        return cls(ic), np.array(list(itertools.product(*axes)), dtype=np.float64)

    @staticmethod
    def grid(nx: int = 256, nt: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Hyper-LR-PINN's grid: x = 2pi j / nx (endpoint excluded), t = linspace(0, 1, nt)."""
        return TWO_PI * np.arange(nx) / nx, np.linspace(0.0, 1.0, nt)

    def initial_condition(self, x):
        """u0(x) for numpy arrays or torch tensors."""
        return self._u0(x)

    def mu(self, mu: Mu = None) -> dict[str, float]:
        p = super().mu(mu)
        if p["nu"] < 0:
            raise ValueError(f"nu must be >= 0 (backward diffusion is ill-posed), got {p['nu']}")
        return p

    def residual(self, u: Tensor, coords: Tensor, mu: Mu = None) -> Tensor:
        """The residual at ``coords``; u_xx (a second backward pass, about half of a convection
        step's cost) is formed only when some point of the batch has nu != 0."""
        p = self.mu_columns(mu, coords.shape[0])
        g = grad(u, coords)
        u = u.reshape(-1)
        r = g[:, 1] + p["beta"] * g[:, 0]
        nu = p["nu"]
        if bool((nu != 0).any()) if isinstance(nu, Tensor) else nu != 0:
            r = r - nu * partial(g[:, 0], coords, 0)
        return r - p["rho"] * u * (1 - u)

    # ------------------------------------------------------------------ references

    def _exact_nu0(self, p: dict[str, float], x, t):
        """The nu = 0 solution at matching x and t (numpy or torch, broadcasting)."""
        m = lib(x)
        return logistic(self._u0(m.remainder(x - p["beta"] * t, TWO_PI)), p["rho"] * t)

    def _comoving_modes(self, p: dict[str, float], t: np.ndarray, n: int, max_dt: float) -> np.ndarray:
        """rfft of the beta = 0 solution w on the n-point grid at times t (which start at 0)."""
        w0 = self._u0(TWO_PI * np.arange(n) / n)
        if p["rho"] == 0:
            k2 = np.arange(n // 2 + 1, dtype=np.float64) ** 2
            return np.fft.rfft(w0)[None, :] * np.exp(-p["nu"] * k2[None, :] * t[:, None])
        return strang_reaction_diffusion(w0, t, p["nu"], p["rho"], max_dt)

    def reference(self, mu: Mu = None, x: np.ndarray | None = None, t: np.ndarray | None = None,
                  max_dt: float | None = None, nx: int = 256) -> np.ndarray:
        """u at every (t_i, x_j): shape (len(t), len(x)); default grid ``grid()``.

        ``t`` must be increasing and non-negative; the splitting (nu, rho > 0) steps by at
        most ``max_dt`` and lands on every t_i.
        """
        p = self.mu(mu)
        xd, td = self.grid()
        x = xd if x is None else np.asarray(x, dtype=np.float64)
        t = td if t is None else np.asarray(t, dtype=np.float64)
        if t[0] < 0 or np.any(np.diff(t) <= 0):
            raise ValueError("t must be non-negative and increasing")
        if p["nu"] == 0:
            return self._exact_nu0(p, x[None, :], t[:, None])
        start = t[0] > 0
        ts = np.concatenate([[0.0], t]) if start else t
        n = x.size if _is_standard_grid(x) else nx
        modes = self._comoving_modes(p, ts, n, max_dt or self.max_dt)[int(start):]
        k = np.arange(n // 2 + 1)
        shifted = modes * np.exp(-1j * p["beta"] * k[None, :] * t[:, None])
        if n == x.size and _is_standard_grid(x):
            return np.fft.irfft(shifted, n=n, axis=-1)
        phase = np.exp(1j * k[None, :] * x[:, None])  # (nx_out, nk)
        return np.real(shifted @ (phase * _mode_weights(n)[None, :]).T)

    def solution(self, mu: Mu, points: np.ndarray) -> np.ndarray:
        """The reference at any points (n, 2) = (x, t): exact for nu = 0, else the interpolant of
        :meth:`reference_fn`."""
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
        with torch.no_grad():
            return self.reference_fn(mu)(pts).numpy()

    def reference_fn(self, mu: Mu = None, nx: int = 256, n_cheb: int = 64,
                     max_dt: float | None = None) -> Callable[[Tensor], Tensor]:
        """A differentiable u(coords) for coords (N, 2) = (x, t), t in [0, 1].

        nu = 0: the exact formula. nu > 0: the trigonometric interpolant in x (``nx`` points),
        in the frame moving with beta, whose modes are the exact free decay
        c_k exp(-nu k^2 t) plus (rho != 0) the reaction-driven remainder z_k(t), z_k(0) = 0,
        as a Chebyshev interpolant in t of degree ``n_cheb`` through splitting solutions at
        the Chebyshev-Lobatto times. Subtracting the free decay keeps the stiff high modes of
        a non-smooth IC (the Gaussians' kink at x = 0) out of the interpolant.
        """
        p = self.mu(mu)
        if p["nu"] == 0:
            return lambda c: self._exact_nu0(p, c[:, 0], c[:, 1])
        n = nx
        k = np.arange(n // 2 + 1, dtype=np.float64)
        weights = _mode_weights(n)
        c0 = np.fft.rfft(self._u0(TWO_PI * np.arange(n) / n))  # the free linear evolution is exact:
        coef = None  # w_k(t) = c0_k exp(-nu k^2 t) + z_k(t), with z_k(0) = 0 driven by the reaction
        if p["rho"] != 0:
            t_end = self.domain.bounds[1][1]
            t_nodes = 0.5 * t_end * (1 - np.cos(np.pi * np.arange(n_cheb + 1) / n_cheb))  # increasing
            t_nodes[0] = 0.0
            vals = self._comoving_modes(p, t_nodes, n, max_dt or self.max_dt)
            z = vals - c0[None, :] * np.exp(-p["nu"] * t_nodes[:, None] * k[None, :] ** 2)
            coef = _chebyshev_coefficients(z[::-1])  # values at s_i = cos(pi i / m)

        def modes(t: Tensor) -> tuple[Tensor, Tensor]:
            decay = torch.exp(-p["nu"] * t[:, None] * t.new_tensor(k**2)[None, :])
            re, im = decay * t.new_tensor(c0.real), decay * t.new_tensor(c0.imag)
            if coef is not None:
                tn = _chebyshev_basis(2 * t / t_end - 1, n_cheb)  # (N, m + 1)
                re, im = re + tn @ t.new_tensor(coef.real), im + tn @ t.new_tensor(coef.imag)
            return re, im

        def u(c: Tensor) -> Tensor:
            x, t = c[:, 0], c[:, 1]
            re, im = modes(t)
            theta = (x - p["beta"] * t)[:, None] * c.new_tensor(k)[None, :]
            return ((re * torch.cos(theta) - im * torch.sin(theta)) * c.new_tensor(weights)).sum(dim=1)

        return u


def _chebyshev_coefficients(vals: np.ndarray) -> np.ndarray:
    """Coefficients a_j of sum_j a_j T_j(s) through values at s_i = cos(pi i / m), i = 0..m."""
    m = vals.shape[0] - 1
    c = np.cos(np.pi * np.outer(np.arange(m + 1), np.arange(m + 1)) / m)
    half = np.ones(m + 1)
    half[[0, -1]] = 0.5
    a = (2.0 / m) * c @ (half[:, None] * vals)
    a[[0, -1]] *= 0.5
    return a


def _chebyshev_basis(s: Tensor, m: int) -> Tensor:
    """T_0(s), ..., T_m(s) by the three-term recurrence (differentiable at s = +-1), (N, m + 1)."""
    cols = [torch.ones_like(s), s]
    for _ in range(m - 1):
        cols.append(2 * s * cols[-1] - cols[-2])
    return torch.stack(cols[: m + 1], dim=1)


__all__ = ["CDR_ICS", "CDR_PRESETS", "ConvectionDiffusionReaction", "logistic", "strang_reaction_diffusion"]
