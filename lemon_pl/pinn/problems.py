"""Parameterised PDE problems for PINNs: domain, parameters, IC/BC, residual and reference solution.

One small class per problem. Collocation points are the rows of ``coords`` (N, d), with the
columns in the order of ``problem.domain.names``; a PDE parameter vector is ``mu`` (a mapping
by name, a sequence in ``problem.param_names`` order, or a tensor (P,) or (N, P) for one
value per point). ``residual(u, coords, mu)`` differentiates the network output ``u`` with
the autograd helpers of :mod:`lemon_pl.pinn.derivatives`; ``reference(mu, ...)`` is a verified
float64 solution on a grid; ``reference_fn(mu)`` is the same solution as a differentiable
torch function of ``coords`` (an exact formula, or a spectral interpolant), so the residual of
the reference itself can be checked.

* :class:`ConvectionDiffusionReaction` — Hyper-LR-PINN's 1-D CDR problem.
* :class:`Helmholtz2D` — the standard 2-D Helmholtz benchmark with an analytic solution.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lemon_pl.pinn.derivatives import grad, laplacian, partial

Mu = Union[Mapping[str, Union[float, Tensor]], Sequence[float], Tensor, None]
TWO_PI = 2 * math.pi


@dataclass(frozen=True)
class Param:
    """One PDE parameter: its default and the range and spacing of the values studied."""

    name: str
    default: float
    low: float
    high: float
    step: float  # spacing of the studied values; 1.0 = integers

    def values(self) -> np.ndarray:
        """The studied values low, low + step, ..., high."""
        n = int(round((self.high - self.low) / self.step)) + 1
        return np.round(self.low + self.step * np.arange(n), 12)


@dataclass(frozen=True)
class Domain:
    """Coordinate names, closed bounds per coordinate, and which coordinates are periodic."""

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    periodic: tuple[bool, ...]

    @property
    def dim(self) -> int:
        return len(self.names)


class Problem(ABC):
    """Shared parameter handling; subclasses define the PDE and its reference solution."""

    name: str
    domain: Domain
    params: tuple[Param, ...]
    boundary: str  # "periodic" or "dirichlet"
    time_dependent: bool

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def mu(self, mu: Mu = None) -> dict[str, float]:
        """One parameter value as floats by name (``None``: the defaults)."""
        if mu is None:
            return self.defaults()
        if isinstance(mu, Mapping):
            missing = set(self.param_names) - set(mu)
            if missing:
                raise ValueError(f"{self.name}: missing parameters {sorted(missing)}; expects {self.param_names}")
            return {n: float(mu[n]) for n in self.param_names}
        vals = np.asarray(mu.detach().cpu() if isinstance(mu, Tensor) else mu, dtype=np.float64).reshape(-1)
        if vals.size != len(self.params):
            raise ValueError(f"{self.name}: expected {len(self.params)} parameters {self.param_names}, got {vals.size}")
        return dict(zip(self.param_names, map(float, vals)))

    def mu_columns(self, mu: Mu, n: int) -> dict[str, Union[float, Tensor]]:
        """Parameters for a residual: floats, or per-point tensors (n,) from an (n, P) tensor."""
        if isinstance(mu, Tensor) and mu.ndim == 2:
            if mu.shape != (n, len(self.params)):
                raise ValueError(f"{self.name}: per-point mu must have shape ({n}, {len(self.params)}), got {tuple(mu.shape)}")
            return {name: mu[:, i] for i, name in enumerate(self.param_names)}
        if isinstance(mu, Mapping) and any(isinstance(v, Tensor) and v.numel() > 1 for v in mu.values()):
            return {name: mu[name].reshape(-1) if isinstance(mu[name], Tensor) else float(mu[name])
                    for name in self.param_names}
        return self.mu(mu)

    @abstractmethod
    def residual(self, u: Tensor, coords: Tensor, mu: Mu = None) -> Tensor:
        """PDE residual (N,) of the network output ``u`` (N,) or (N, 1) computed from ``coords``."""

    def residual_of(self, u_fn: Callable[[Tensor], Tensor], coords: Tensor, mu: Mu = None) -> Tensor:
        """Residual (N,) of the field ``u_fn`` (a network or a reference) at ``coords``."""
        coords = coords.detach().requires_grad_(True)
        return self.residual(u_fn(coords), coords, mu)

    @abstractmethod
    def reference(self, mu: Mu, *grid: np.ndarray) -> np.ndarray:
        """Reference solution on the tensor grid of the given axes (float64)."""

    @abstractmethod
    def reference_fn(self, mu: Mu) -> Callable[[Tensor], Tensor]:
        """The reference solution as a differentiable torch function coords (N, d) -> (N,)."""

    def initial_condition(self, x):
        raise ValueError(f"{self.name} is steady: it has no initial condition")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: params {self.param_names}, boundary {self.boundary}>"


# =========================================================================== 1-D CDR


def _lib(x):
    return torch if isinstance(x, Tensor) else np


def _one_plus_sin(x):
    return 1 + _lib(x).sin(x)


def _gaussian(sigma: float):
    def u0(x):
        return _lib(x).exp(-((x - math.pi) ** 2) / (2 * sigma**2))

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


def _interval_steps(t: np.ndarray, max_dt: float) -> list[int]:
    """Equal sub-steps per output interval, each <= max_dt, so that the steps land on ``t``."""
    return [max(1, int(math.ceil((b - a) / max_dt - 1e-9))) for a, b in zip(t[:-1], t[1:])]


def strang_reaction_diffusion(w0: np.ndarray, t: np.ndarray, nu: float, rho: float,
                              max_dt: float) -> np.ndarray:
    """w_t = nu w_xx + rho w (1 - w) on the periodic grid of ``w0`` (n,) over [0, 2pi).

    Strang splitting R(h/2) D(h) R(h/2) with both sub-flows exact: D is the Fourier
    propagator exp(-nu k^2 h), R the logistic closed form. Second order in h; the interval
    between consecutive output times is cut into equal steps <= ``max_dt``, so the steps land
    exactly on every entry of ``t`` (which must start at 0 and increase). Returns the Fourier
    coefficients ``rfft(w)`` at every output time, (nt, n // 2 + 1).
    """
    t = np.asarray(t, dtype=np.float64)
    if t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError("output times must start at 0 and increase")
    n = w0.size
    k2 = np.arange(n // 2 + 1, dtype=np.float64) ** 2
    out = np.empty((t.size, n // 2 + 1), dtype=np.complex128)
    w = np.asarray(w0, dtype=np.float64).copy()
    out[0] = np.fft.rfft(w)
    for i, steps in enumerate(_interval_steps(t, max_dt)):
        h = (t[i + 1] - t[i]) / steps
        prop = np.exp(-nu * k2 * h)
        for _ in range(steps):
            w = logistic(w, 0.5 * rho * h)
            w = np.fft.irfft(np.fft.rfft(w) * prop, n=n)
            w = logistic(w, 0.5 * rho * h)
        out[i + 1] = np.fft.rfft(w)
    return out


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
    domain = Domain(("x", "t"), ((0.0, TWO_PI), (0.0, 1.0)), (True, False))
    params = (Param("beta", 1.0, 0.0, 40.0, 1.0), Param("nu", 1.0, 0.0, 5.0, 1.0), Param("rho", 1.0, 0.0, 5.0, 1.0))
    boundary = "periodic"
    time_dependent = True
    max_dt = 1e-3  # default splitting step

    def __init__(self, ic: str = "1+sin"):
        if ic not in CDR_ICS:
            raise ValueError(f"unknown IC {ic!r}; choose from {sorted(CDR_ICS)}")
        self.ic = ic
        self._u0 = CDR_ICS[ic]

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
        p = self.mu_columns(mu, coords.shape[0])
        g = grad(u, coords)
        u_xx = partial(g[:, 0], coords, 0)
        u = u.reshape(-1)
        return g[:, 1] + p["beta"] * g[:, 0] - p["nu"] * u_xx - p["rho"] * u * (1 - u)

    # ------------------------------------------------------------------ references

    def _exact_nu0(self, p: dict[str, float], x, t):
        """The nu = 0 solution at matching x and t (numpy or torch, broadcasting)."""
        lib = _lib(x)
        return logistic(self._u0(lib.remainder(x - p["beta"] * t, TWO_PI)), p["rho"] * t)

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


# =========================================================================== 2-D Helmholtz


class Helmholtz2D(Problem):
    """u_xx + u_yy + k^2 u - q(x, y; a1, a2) = 0 on [-1, 1]^2, Dirichlet boundary.

    The standard form (pinn-methods.md §1; McClenny & Braga-Neto, PINA, PINNsFormer; the
    paper's exact setting is UNVERIFIED): u = sin(a1 pi x) sin(a2 pi y),
    q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u, k = 1. Hyper-LR-PINN trains on a1 = a2 in
    [2, 3] in steps of 0.1. The boundary data are the exact solution's values
    (``boundary_value``): zero only when a1 and a2 are integers (sin(2.5 pi) = 1).
    ``reference(mu, x, y)`` has shape (len(y), len(x)).
    """

    name = "helmholtz"
    domain = Domain(("x", "y"), ((-1.0, 1.0), (-1.0, 1.0)), (False, False))
    params = (Param("a1", 2.5, 2.0, 3.0, 0.1), Param("a2", 2.5, 2.0, 3.0, 0.1))
    boundary = "dirichlet"
    time_dependent = False

    def __init__(self, k: float = 1.0):
        self.k = float(k)

    @staticmethod
    def grid(nx: int = 101, ny: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uniform closed grids of [-1, 1] in x and y (``ny`` defaults to ``nx``)."""
        return np.linspace(-1.0, 1.0, nx), np.linspace(-1.0, 1.0, ny or nx)

    def exact(self, mu: Mu, x, y):
        """sin(a1 pi x) sin(a2 pi y), numpy or torch, broadcasting."""
        p = mu if isinstance(mu, dict) else self.mu(mu)
        lib = _lib(x)
        return lib.sin(p["a1"] * math.pi * x) * lib.sin(p["a2"] * math.pi * y)

    def forcing(self, coords: Tensor, mu: Mu = None) -> Tensor:
        p = self.mu_columns(mu, coords.shape[0])
        q = self.k**2 - (p["a1"] * math.pi) ** 2 - (p["a2"] * math.pi) ** 2
        return q * self.exact(p, coords[:, 0], coords[:, 1])

    def boundary_value(self, coords: Tensor, mu: Mu = None) -> Tensor:
        """Dirichlet data g at boundary points: the exact solution there."""
        return self.exact(self.mu_columns(mu, coords.shape[0]), coords[:, 0], coords[:, 1])

    def residual(self, u: Tensor, coords: Tensor, mu: Mu = None) -> Tensor:
        u_flat = u[:, 0] if u.ndim == 2 else u
        return laplacian(u, coords) + self.k**2 * u_flat - self.forcing(coords, mu)

    def reference(self, mu: Mu = None, x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
        xd, yd = self.grid()
        x = xd if x is None else np.asarray(x, dtype=np.float64)
        y = yd if y is None else np.asarray(y, dtype=np.float64)
        return self.exact(self.mu(mu), x[None, :], y[:, None])

    def reference_fn(self, mu: Mu = None) -> Callable[[Tensor], Tensor]:
        p = self.mu(mu)
        return lambda c: self.exact(p, c[:, 0], c[:, 1])
