"""The 19 one-dimensional operator families of LeMON.

Each family couples a PDE with parameter ranges, a physical horizon ``t_final``, an
initial-condition distribution, a batched solver and the equation tree written in prefix
tokens. Usage::

    from lemon_pl.data.families import get_family, list_families
    fam = get_family("kdv")
    rng = np.random.default_rng(0)
    p = fam.sample_params(rng)                    # {'delta': 0.0218}
    u0 = fam.sample_initial_conditions(rng, 8, 128)
    u = fam.solve(p, u0, nt=64)                   # (8, 64, 128), u[:, 0] == u0
    fam.equation(p)                               # 'u_t + u*u_x + 0.000475*u_xxx = 0'
    fam.tokens(p)                                 # prefix token ids in *stored* time

Time conventions: frame k is at physical time ``t_k = k * t_final / nt`` (k = 0..nt-1, the
horizon itself excluded, for every family) and at stored time ``s_k = c_t * t_k`` with
``c_t = 2 / t_final``, so stored time always covers [0, 2). The token tree is written in
stored time: it multiplies u_t by c_t and u_tt by c_t^2. ``equation()`` is the readable
physical-time form.

Parameters (:class:`lemon_pl.data.params.Param`) are drawn as U[(1-gamma) q_c, (1+gamma) q_c]
and rounded to 3 significant digits (the float tokenizer's precision); the solver uses the rounded values, so the
tokens describe the data exactly. Derived coefficients (c^2, eps/pi, ...) are rounded only
when tokenised.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from lemon_pl.data import ics, solvers
from lemon_pl.data.params import Param, ParamSpace
from lemon_pl.data.constants import FP_AMPLITUDE, FP_LENGTH_UM, FP_RADIUS, FP_TEMPERATURE, K_B
from lemon_pl.data.symbols import Expr, chain, encode, integer, num, op, var

Params = Mapping[str, float]


class UnknownFamilyError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Family(ABC):
    """Base class: subclasses set the spec fields and implement ``_solve`` and ``_rhs_tree``."""

    name: str
    params: tuple[Param, ...]
    t_final: float
    ic_type: str
    template: str  # readable infix template with parameter names
    ic_kwargs: Mapping[str, int] = field(default_factory=dict)
    second_order: bool = False  # u_tt instead of u_t
    max_abs: float = 1e3  # trajectories exceeding this are rejected as blow-ups

    # ------------------------------------------------------------------ spec
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def space(self) -> ParamSpace:
        """The family's parameters as a :class:`lemon_pl.data.params.ParamSpace`."""
        return ParamSpace(self.params)

    @property
    def c_t(self) -> float:
        return 2.0 / self.t_final

    def x_grid(self, nx: int = 128) -> np.ndarray:
        return ics.grid(nx)

    def t_grid(self, nt: int = 64) -> np.ndarray:
        """Physical time of each stored frame: k * t_final / nt."""
        if nt < 2:
            raise ValueError(f"nt must be at least 2, got {nt}")
        return np.arange(nt) * (self.t_final / nt)

    @property
    def x(self) -> np.ndarray:
        return self.x_grid()

    @property
    def t(self) -> np.ndarray:
        return self.t_grid()

    # ------------------------------------------------------------------ sampling
    def sample_params(self, rng: np.random.Generator, gamma: float = 0.1) -> dict[str, float]:
        """One draw of every parameter (:meth:`lemon_pl.data.params.ParamSpace.sample`)."""
        return self.space.sample(rng, gamma)

    def sample_initial_conditions(self, rng: np.random.Generator, n: int, nx: int = 128) -> np.ndarray:
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        return ics.IC_SAMPLERS[self.ic_type](rng, n, nx, **self.ic_kwargs)

    def params_array(self, params: Params) -> np.ndarray:
        return np.array([self._get(params)[n] for n in self.param_names], dtype=np.float64)

    def _get(self, params: Params | Sequence[float] | np.ndarray) -> dict[str, float]:
        if isinstance(params, Mapping):
            missing = set(self.param_names) - set(params)
            if missing:
                raise ValueError(f"{self.name}: missing parameters {sorted(missing)}; expects {self.param_names}")
            return {k: float(params[k]) for k in self.param_names}
        vals = np.asarray(params, dtype=np.float64).reshape(-1)
        if vals.size != len(self.params):
            raise ValueError(f"{self.name}: expected {len(self.params)} parameters {self.param_names}, got {vals.size}")
        return dict(zip(self.param_names, map(float, vals)))

    # ------------------------------------------------------------------ solving
    def solve(self, params: Params | Sequence[float], u0: np.ndarray, nt: int = 64) -> np.ndarray:
        """Solve from caller-given ICs ``u0`` (B, nx) -> (B, nt, nx) on ``t_grid(nt)``."""
        u0 = np.asarray(u0, dtype=np.float64)
        if u0.ndim != 2:
            raise ValueError(f"u0 must have shape (B, nx), got {u0.shape}")
        out = self._solve(self._get(params), u0, self.t_grid(nt))
        out[:, 0] = u0
        return out

    @abstractmethod
    def _solve(self, p: dict[str, float], u0: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Solutions (B, nt, nx) at physical times ``t`` from ICs ``u0`` (B, nx)."""

    # ------------------------------------------------------------------ torch solving
    #: the generator's default on CPU: the torch solver where it is faster there (measured by
    #: benchmarks/generate_throughput.py), numpy otherwise; on a GPU every torch solver is used
    torch_on_cpu = True

    @property
    def has_torch(self) -> bool:
        """Whether this family has a torch solver (a subclass overrides ``_solve_torch``)."""
        return type(self)._solve_torch is not Family._solve_torch

    def solve_torch(self, params, u0, nt: int = 64, device=None, dtype=None):
        """The torch solver (CPU or CUDA): ``u0`` (B, nx) -> tensor (B, nt, nx) on ``t_grid(nt)``.

        ``params`` is one parameter row (a mapping or sequence, as ``solve`` takes) for every
        trajectory, or a (B, P) array / tensor with one row per trajectory (several operators
        solved at once). ``u0`` is a numpy array or tensor; ``device`` defaults to u0's (CPU for
        arrays), ``dtype`` to torch.float64 (torch.float32, or "float32" / "float64").
        Parameters are passed to the solver as (B, 1) tensors in the working dtype.
        """
        import torch

        if not self.has_torch:
            raise NotImplementedError(f"{self.name} has no torch solver yet; use solve() (the numpy solver)")
        dtype = _torch_dtype(dtype)
        if device is None:
            device = u0.device if isinstance(u0, torch.Tensor) else "cpu"
        u0 = torch.as_tensor(u0).to(device=device, dtype=dtype)
        if u0.ndim != 2:
            raise ValueError(f"u0 must have shape (B, nx), got {tuple(u0.shape)}")
        b = u0.shape[0]
        p = {name: torch.as_tensor(col, dtype=torch.float64).to(device=device, dtype=dtype)[:, None]
             for name, col in self._param_columns(params, b).items()}
        t = torch.as_tensor(self.t_grid(nt), dtype=torch.float64, device=device)
        out = self._solve_torch(p, u0.contiguous(), t)
        out[:, 0] = u0
        return out

    def _param_columns(self, params, b: int) -> dict[str, np.ndarray]:
        """Per-row parameter columns (B,) float64 from one row or a (B, P) array."""
        if not isinstance(params, Mapping):
            if hasattr(params, "detach"):  # a tensor
                params = params.detach().cpu().numpy()
            arr = np.asarray(params, dtype=np.float64)
            if arr.ndim == 2:
                if arr.shape != (b, len(self.params)):
                    raise ValueError(f"{self.name}: per-row parameters must have shape ({b}, {len(self.params)}) "
                                     f"for {self.param_names}, got {arr.shape}")
                return {n: arr[:, i].copy() for i, n in enumerate(self.param_names)}
        row = self._get(params)
        return {n: np.full(b, row[n]) for n in self.param_names}

    def _solve_torch(self, p, u0, t):
        """Torch solutions (B, nt, nx) at physical times ``t`` (float64 tensor) from ``u0`` (B, nx).

        ``p`` maps every parameter name to a (B, 1) tensor in u0's dtype and device. Families
        with a torch solver override this (``has_torch`` is then True).
        """
        raise NotImplementedError(f"{self.name} has no torch solver")

    def accept(self, u: np.ndarray) -> np.ndarray:
        """Boolean (B,): trajectories that are finite and bounded (not blow-ups)."""
        flat = u.reshape(u.shape[0], -1)
        return np.all(np.isfinite(flat), axis=1) & (np.max(np.abs(np.nan_to_num(flat, nan=np.inf)), axis=1) < self.max_abs)

    # ------------------------------------------------------------------ symbols
    @abstractmethod
    def _rhs_tree(self, p: dict[str, float]) -> list[tuple[int, Expr]]:
        """Signed spatial terms T_i such that time-derivative-term + sum(T_i) = 0."""

    def tree(self, params: Params | Sequence[float], stored_time: bool = True) -> Expr:
        p = self._get(params)
        c = self.c_t if stored_time else 1.0
        if self.second_order:
            lead = var("utt_0") if c == 1.0 and not stored_time else num(c * c) * var("utt_0")
        else:
            lead = var("ut_0") if c == 1.0 and not stored_time else num(c) * var("ut_0")
        return chain((1, lead), *self._rhs_tree(p))

    def equation(self, params: Params | Sequence[float]) -> str:
        """Readable physical-time equation, e.g. ``u_t + 0.503*u_x = 0``."""
        return self.tree(params, stored_time=False).infix() + " = 0"

    def tokens(self, params: Params | Sequence[float]) -> list[int]:
        """Prefix token ids (no BOS/EOS) of the stored-time equation."""
        return encode(self.tree(params, stored_time=True))

    def __repr__(self) -> str:
        return f"<family {self.name}: {self.template}, t_final={self.t_final}>"


def _u(n: str = "u_0") -> Expr:
    return var(n)


def _torch_dtype(dtype):
    """None -> torch.float64; "float32" / "float64" / a torch dtype -> that torch dtype."""
    import torch

    if dtype is None:
        return torch.float64
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in ("float32", "float64"):
            raise ValueError(f"solver dtype must be float32 or float64, got {dtype!r}")
        return getattr(torch, name)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"solver dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def _ts():
    from lemon_pl.data import torch_solvers

    return torch_solvers


def _tsp():
    from lemon_pl.data import torch_spectral

    return torch_spectral


# =========================================================================== linear, exact


class Heat(Family):
    """u_t = nu u_xx. Exact Fourier propagator exp(-nu k^2 t) (the reference used FD + BDF)."""

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        k = solvers.wavenumbers(u0.shape[-1])
        return solvers.evolve_linear(u0, -p["nu"] * k**2, t)

    def _solve_torch(self, p, u0, t):
        return _tsp().heat(u0, t, nu=p["nu"])

    def _rhs_tree(self, p):
        return [(-1, num(p["nu"]) * _u("uxx_0"))]


class Advection(Family):
    """u_t + beta u_x = 0. Exact periodic shift in Fourier space."""

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        k = solvers.wavenumbers(u0.shape[-1])
        return solvers.evolve_linear(u0, -1j * p["beta"] * k, t)

    def _solve_torch(self, p, u0, t):
        return _tsp().advection(u0, t, beta=p["beta"])

    def _rhs_tree(self, p):
        return [(1, num(p["beta"]) * _u("ux_0"))]


class Wave(Family):
    """u_tt = beta^2 u_xx, u_t(0) = 0. Exact d'Alembert solution via cos(beta k t)."""

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        k = solvers.wavenumbers(u0.shape[-1])
        return solvers.evolve_second_order(u0, p["beta"] * k, t)

    def _solve_torch(self, p, u0, t):
        return _tsp().wave(u0, t, beta=p["beta"])

    def _rhs_tree(self, p):
        return [(-1, num(p["beta"] ** 2) * _u("uxx_0"))]


class KleinGordon(Family):
    """u_tt = c^2 u_xx - m^2 c^4 u, u_t(0) = 0. Exact: omega_k^2 = c^2 k^2 + m^2 c^4.

    The reference integrated 6,400 leapfrog steps (and plotted every sample).
    """

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        k = solvers.wavenumbers(u0.shape[-1])
        c, m = p["c"], p["m"]
        return solvers.evolve_second_order(u0, np.sqrt(c**2 * k**2 + m**2 * c**4), t)

    def _solve_torch(self, p, u0, t):
        return _tsp().klein_gordon(u0, t, c=p["c"], m=p["m"])

    def _rhs_tree(self, p):
        c, m = p["c"], p["m"]
        return [(-1, num(c**2) * _u("uxx_0")), (1, num(m**2 * c**4) * _u())]


class LinearReactionDiffusion(Family):
    """u_t = nu u_xx + rho u. Exact Fourier propagator exp((rho - nu k^2) t)."""

    def _solve(self, p, u0, t):
        k = solvers.wavenumbers(u0.shape[-1])
        return solvers.evolve_linear(u0, p["rho"] - p["nu"] * k**2, t)

    def _solve_torch(self, p, u0, t):
        return _ts().linear_reaction_diffusion(u0, t, p["nu"], p["rho"])

    def _rhs_tree(self, p):
        return [(-1, num(p["nu"]) * _u("uxx_0")), (-1, num(p["rho"]) * _u())]


# =========================================================================== nonlinear waves


class SineGordon(Family):
    """u_tt = u_xx - c sin(u), u_t(0) = 0. Stormer-Verlet with a spectral Laplacian."""

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        c = p["c"]
        return solvers.leapfrog_wave(u0, t, 1.0, lambda u: -c * np.sin(u))

    def _solve_torch(self, p, u0, t):
        return _tsp().sine_gordon(u0, t, c=p["c"])

    def _rhs_tree(self, p):
        return [(-1, _u("uxx_0")), (1, num(p["c"]) * op("sin", _u()))]


class KdV(Family):
    """u_t + u u_x + delta^2 u_xxx = 0. Fourier pseudo-spectral ETDRK4 with 2/3 dealiasing.

    The linear dispersive part (stiff: delta^2 k^3 ~ 4e3) is integrated exactly by the
    exponential integrator; the reference used an integrating factor with adaptive RK45.
    """

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        nx = u0.shape[-1]
        k = solvers.wavenumbers(nx)
        d2 = p["delta"] ** 2
        lin = 1j * d2 * k**3
        keep = (np.arange(k.size) < (nx // 3)).astype(float)  # 2/3 rule
        half_ik = -0.5j * k * keep

        def nonlin(v):
            u = np.fft.irfft(v, n=nx, axis=-1)
            return half_ik * np.fft.rfft(u * u, axis=-1)

        return solvers.etdrk4(u0, t, lin, nonlin, max_dt=self.t_final / 256)

    def _solve_torch(self, p, u0, t):
        return _tsp().kdv(u0, t, delta=p["delta"], max_dt=self.t_final / 256)

    def _rhs_tree(self, p):
        return [(1, _u() * _u("ux_0")), (1, num(p["delta"] ** 2) * _u("uxxx_0"))]


# =========================================================================== fourth order / nonlinear diffusion


class CahnHilliard(Family):
    """u_t = (3u^2 - 1 - eps^2 u_xx)_xx, i.e. u_t + eps^2 u_xxxx - 6 u_x^2 - 6 u u_xx = 0.

    This is PROSE's self-consistent form. LeMON HEAD solves a different, anti-diffusive ODE
    (u_t = -(eps^2 u_xx + 3u^2 - 1)) that contradicts its own tokens; we solve the equation the
    tokens describe. Second-order conservative FD, implicit BDF (the problem is stiff).
    """

    def _solve(self, p, u0, t):
        return solvers.cahn_hilliard(u0, t, p["eps"] ** 2)

    def _solve_torch(self, p, u0, t):
        from lemon_pl.data import torch_implicit

        nx = u0.shape[-1]
        # O(nx) cyclic reduction on CPU (nx a power of two), batched dense LU on a GPU
        solver = "cyclic" if u0.device.type == "cpu" and nx & (nx - 1) == 0 else "dense"
        return torch_implicit.cahn_hilliard(u0, t, p["eps"] ** 2, linear_solver=solver)

    def _rhs_tree(self, p):
        return [
            (1, num(p["eps"] ** 2) * _u("uxxxx_0")),
            (-1, integer(6) * op("pow2", _u("ux_0"))),
            (-1, integer(6) * (_u() * _u("uxx_0"))),
        ]


class PorousMedium(Family):
    """u_t = (u^m)_xx, m in {2, 3, 4}: u_t - m u^{m-1} u_xx - m(m-1) u^{m-2} u_x^2 = 0.

    The reference's tokens have the opposite sign to its solver (they encode u_t = -(u^m)_xx);
    ours match the data. Conservative explicit FD with an adaptive monotone step.
    """

    def _solve(self, p, u0, t):
        return solvers.porous_medium(u0, t, int(round(p["m"])))

    def _solve_torch(self, p, u0, t):
        return _ts().porous_medium(u0, t, p["m"])

    def _rhs_tree(self, p):
        m = int(round(p["m"]))
        um1 = _u() if m == 2 else op("pow", _u(), integer(m - 1))
        terms = [(-1, integer(m) * (um1 * _u("uxx_0")))]
        grad2 = op("pow2", _u("ux_0"))
        terms.append((-1, integer(m * (m - 1)) * (grad2 if m == 2 else (_u() if m == 3 else op("pow2", _u())) * grad2)))
        return terms


# =========================================================================== reaction-diffusion


def _logistic_step(rho):
    def step(u, h):
        e = math.exp(rho * h)
        return u * e / (1.0 + u * (e - 1.0))

    return step


class ReactionDiffusion(Family):
    """u_t = nu u_xx + rho f(u), Strang splitting with exact diffusion (FD symbol)."""

    kinetics: str = "logistic"

    def _solve(self, p, u0, t):
        nu, rho = p["nu"], p["rho"]
        kin = type(self).kinetics
        if kin == "logistic":
            step = _logistic_step(rho)
        elif kin == "bistable":
            a = p["a"]
            step = solvers.rk4_reaction(lambda u: rho * u * (1 - u) * (u - a))
        else:  # square logistic
            step = solvers.rk4_reaction(lambda u: rho * u * u * (1 - u) ** 2)
        return solvers.reaction_diffusion(u0, t, nu, step, max_dt=self.t_final / 256)

    def _solve_torch(self, p, u0, t):
        ts = _ts()  # float32: fewer, more accurate sub-steps, one RK4 step each (see RD_DIVISIONS)
        return ts.reaction_diffusion(u0, t, p["nu"], p["rho"], type(self).kinetics, a=p.get("a"),
                                     max_dt=self.t_final / ts.RD_DIVISIONS[u0.dtype],
                                     substeps=ts.RD_RK4_SUBSTEPS[u0.dtype])

    def _rhs_tree(self, p):
        kin = type(self).kinetics
        one_minus_u = integer(1) - _u()
        if kin == "logistic":
            react = _u() * one_minus_u
        elif kin == "bistable":
            react = _u() * (one_minus_u * (_u() - num(p["a"])))
        else:
            react = op("pow2", _u()) * op("pow2", one_minus_u)
        return [(-1, num(p["nu"]) * _u("uxx_0")), (-1, num(p["rho"]) * react)]


class LogisticReactionDiffusion(ReactionDiffusion):
    """u_t = nu u_xx + rho u (1 - u); the logistic reaction step is exact. Keeps [0, 1]."""

    kinetics = "logistic"


class BistableReactionDiffusion(ReactionDiffusion):
    """u_t = nu u_xx + rho u (1 - u)(u - a), a ~ U(0, 1). Keeps [0, 1] (RK4 reaction)."""

    kinetics = "bistable"


class SquareLogisticReactionDiffusion(ReactionDiffusion):
    """u_t = nu u_xx + rho u^2 (1 - u)^2. Keeps [0, 1] (RK4 reaction)."""

    kinetics = "square"


# =========================================================================== conservation laws


class ConservationLaw(Family):
    """u_t + k f(u)_x = (eps/pi) u_xx (eps = 0 for the inviscid families).

    MUSCL-MC finite volumes with Rusanov fluxes using the correct wave speed max|k f'(u)|
    (the reference used |uL + uR|/2 for every flux), SSP-RK3, exact mass conservation.
    All Burgers-type families use init_multi ICs (the reference fell through to GP ICs for
    the viscous cubic flux by accident).
    """

    flux_kind: str = "burgers"

    def _fluxes(self, k):
        kind = type(self).flux_kind
        if kind == "burgers":
            return (lambda u: 0.5 * k * u * u,
                    lambda a, b: abs(k) * np.maximum(np.abs(a), np.abs(b)))
        if kind == "sin":
            def sin_speed(a, b):
                lo, hi = np.minimum(a, b), np.maximum(a, b)
                has_peak = np.floor(hi / np.pi) > np.floor(lo / np.pi)  # a multiple of pi in (lo, hi]
                return abs(k) * np.where(has_peak, 1.0, np.maximum(np.abs(np.cos(a)), np.abs(np.cos(b))))
            return (lambda u: k * np.sin(u), sin_speed)
        return (lambda u: k * u**3 / 3.0,
                lambda a, b: abs(k) * np.maximum(a * a, b * b))

    def _solve(self, p, u0, t):
        k = p["k"]
        nu = p.get("eps", 0.0) / math.pi
        flux, speed = self._fluxes(k)
        return solvers.conservation_law(u0, t, flux, speed, nu)

    def _solve_torch(self, p, u0, t):
        nu = p["eps"] / math.pi if "eps" in p else None
        return _ts().conservation_law(u0, t, p["k"], nu, type(self).flux_kind)

    def _rhs_tree(self, p):
        kind = type(self).flux_kind
        if kind == "burgers":
            adv = _u() * _u("ux_0")
        elif kind == "sin":
            adv = op("cos", _u()) * _u("ux_0")
        else:
            adv = op("pow2", _u()) * _u("ux_0")
        terms = [(1, num(p["k"]) * adv)]
        if "eps" in p:
            terms.append((-1, num(p["eps"] / math.pi) * _u("uxx_0")))
        return terms


class Burgers(ConservationLaw):
    flux_kind = "burgers"


class SinFlux(ConservationLaw):
    flux_kind = "sin"


class CubicFlux(ConservationLaw):
    flux_kind = "cubic"


# =========================================================================== Fokker-Planck



def fplanck_coefficients(eta: float) -> tuple[float, float, float]:
    """(A, B, D) of p_t + A cos(10x) p + B sin(10x) p_x - D p_xx = 0 (x in um, t in s)."""
    drag = 6 * math.pi * eta * FP_RADIUS
    length_m = FP_LENGTH_UM * 1e-6
    a = FP_AMPLITUDE / (drag * length_m**2)
    b = FP_AMPLITUDE / (drag * length_m) * 1e6
    d = K_B * FP_TEMPERATURE / drag * 1e12
    return a, b, d


class FokkerPlanck(Family):
    """Overdamped particle in U = c cos(x/L): p_t + A cos(10x) p + B sin(10x) p_x - D p_xx = 0.

    Solved as the nearest-neighbour master equation (the reference's `fplanck` scheme),
    propagated exactly through one symmetric eigendecomposition per operator (the rates
    satisfy detailed balance with the Boltzmann distribution). Fixes against the reference: the sin
    term's sign in the tokens (the reference's tree had it flipped), the NameError that made
    LeMON HEAD unable to generate this family, and the time grid (frames at k t_f / nt like
    every other family, not linspace(0, t_f, 64) with the endpoint). Note that cos(10x) is
    not 2-periodic: at the seam x = 0 the potential jumps, as in the reference.
    """

    torch_on_cpu = False  # numpy's FFTs and shared propagators are faster on CPU

    def _solve(self, p, u0, t):
        nx = u0.shape[-1]
        x = ics.grid(nx)
        _, _, d = fplanck_coefficients(p["eta"])
        beta = 1.0 / (K_B * FP_TEMPERATURE)
        potential = FP_AMPLITUDE * np.cos(x / FP_LENGTH_UM)
        M = solvers.master_equation_matrix(potential, d, beta, ics.L_DOMAIN / nx)
        boltzmann = np.exp(-beta * (potential - potential.min()))
        return solvers.evolve_master(u0, t, M, stationary=boltzmann / boltzmann.sum())

    def _solve_torch(self, p, u0, t):
        return _tsp().fplanck(u0, t, eta=p["eta"])

    def _rhs_tree(self, p):
        a, b, d = fplanck_coefficients(p["eta"])
        ten_x = integer(10) * var("x")
        return [
            (1, num(a) * (op("cos", ten_x) * _u())),
            (1, num(b) * (op("sin", ten_x) * _u("ux_0"))),
            (-1, num(d) * _u("uxx_0")),
        ]


# =========================================================================== registry

_NU = Param("nu", 3e-3)
_EPS = Param("eps", 0.01)
_K = Param("k", 1.0)

_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Heat("heat", (_NU,), 2.0, "init_multi", "u_t - nu*u_xx = 0", {"k_tot": 4}),
        Advection("advection", (Param("beta", 0.5),), 2.0, "sines", "u_t + beta*u_x = 0"),
        Wave("wave", (Param("beta", 0.5),), 1.0, "sines", "u_tt - beta^2*u_xx = 0", second_order=True),
        KleinGordon("Klein_Gordon", (Param("c", 1.0), Param("m", 0.1)), 1.0, "init_multi",
                    "u_tt - c^2*u_xx + m^2*c^4*u = 0", {"k_tot": 2, "num_k": 1}, second_order=True),
        SineGordon("Sine_Gordon", (Param("c", 1.0),), 1.0, "init_multi", "u_tt - u_xx + c*sin(u) = 0",
                   {"k_tot": 2, "num_k": 1}, second_order=True),
        KdV("kdv", (Param("delta", 0.022),), 1.0, "kdv_gaussians", "u_t + u*u_x + delta^2*u_xxx = 0"),
        CahnHilliard("cahnhilliard_1D", (_EPS,), 0.5, "init_multi",
                     "u_t + eps^2*u_xxxx - 6*u_x^2 - 6*u*u_xx = 0", {"k_tot": 2}),
        PorousMedium("porous_medium", (Param("m", choices=(2, 3, 4)),), 0.1, "gaussian_bump",
                     "u_t - (u^m)_xx = 0"),
        LogisticReactionDiffusion("diff_logisreact_1D", (_NU, Param("rho", 1.0)), 2.0, "init_multi",
                                  "u_t - nu*u_xx - rho*u*(1 - u) = 0", {"k_tot": 4}),
        LinearReactionDiffusion("diff_linearreact_1D", (_NU, Param("rho", 0.1)), 2.0, "init_multi",
                                "u_t - nu*u_xx - rho*u = 0", {"k_tot": 4}),
        BistableReactionDiffusion("diff_bistablereact_1D",
                                  (_NU, Param("rho", 1.0), Param("a", low=0.0, high=1.0)), 2.0,
                                  "init_multi", "u_t - nu*u_xx - rho*u*(1 - u)*(u - a) = 0", {"k_tot": 4}),
        SquareLogisticReactionDiffusion("diff_squarelogisticreact_1D", (_NU, Param("rho", 1.0)), 2.0,
                                        "init_multi", "u_t - nu*u_xx - rho*u^2*(1 - u)^2 = 0", {"k_tot": 4}),
        Burgers("burgers", (_EPS, _K), 2.0, "init_multi", "u_t + k*u*u_x - (eps/pi)*u_xx = 0", {"k_tot": 4}),
        SinFlux("conservation_sinflux", (_EPS, _K), 2.0, "init_multi",
                "u_t + k*cos(u)*u_x - (eps/pi)*u_xx = 0", {"k_tot": 4}),
        CubicFlux("conservation_cubicflux", (_EPS, _K), 2.0, "init_multi",
                  "u_t + k*u^2*u_x - (eps/pi)*u_xx = 0", {"k_tot": 4}),
        Burgers("inviscid_burgers", (_K,), 2.0, "init_multi", "u_t + k*u*u_x = 0", {"k_tot": 4}),
        SinFlux("inviscid_conservation_sinflux", (_K,), 2.0, "init_multi", "u_t + k*cos(u)*u_x = 0", {"k_tot": 4}),
        CubicFlux("inviscid_conservation_cubicflux", (_K,), 2.0, "init_multi", "u_t + k*u^2*u_x = 0",
                  {"k_tot": 4}),
        FokkerPlanck("fplanck", (Param("eta", 1e-3),), 0.1, "fplanck_gaussian",
                     "p_t + A(eta)*cos(10x)*p + B(eta)*sin(10x)*p_x - D(eta)*p_xx = 0"),
    ]
}

#: The 7 pretraining families of the reference split (scripts/loraexperiments.sh).
PRETRAIN_FAMILIES = (
    "advection", "heat", "diff_bistablereact_1D", "conservation_sinflux",
    "inviscid_conservation_cubicflux", "Klein_Gordon", "fplanck",
)
#: The 12 fine-tuning families of the reference split.
FINETUNE_FAMILIES = tuple(n for n in _FAMILIES if n not in PRETRAIN_FAMILIES)


def list_families() -> list[str]:
    """Names of all registered families, in the canonical order."""
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown family {name!r}; valid families are: {', '.join(_FAMILIES)}"
        ) from None


#: names that stand for a group of families, anywhere a family list is accepted
FAMILY_GROUPS = ("all", "pretrain", "finetune")


def family_group(name: str) -> list[str] | None:
    """The families of a group name (``all`` / ``pretrain`` / ``finetune``), else ``None``."""
    if name == "all":
        return list_families()
    if name == "pretrain":
        return list(PRETRAIN_FAMILIES)
    if name == "finetune":
        return list(FINETUNE_FAMILIES)
    return None


def resolve_families(spec: str | Sequence[str] | None) -> list[str]:
    """'all' / None / 'pretrain' / 'finetune' / comma list / list -> validated family names.

    A group name may stand anywhere in a list (``["all"]``, ``"pretrain,kdv"``) and expands in
    place; duplicates are dropped, the first occurrence keeps its position. An empty list (``""``,
    ``","``, ``[]``) is an error."""
    if spec is None:
        return list_families()
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    expanded: list[str] = []
    for item in spec:
        item = str(item).strip()
        expanded += family_group(item) or ([item] if item else [])
    names = list(dict.fromkeys(expanded))
    if not names:
        raise ValueError("the family list is empty; give family names or all / pretrain / finetune")
    for n in names:
        get_family(n)
    return names
