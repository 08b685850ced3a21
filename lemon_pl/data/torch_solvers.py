"""Torch solvers for the finite-volume, reaction-diffusion and porous-medium families.

The same code runs on CPU and CUDA, batched over samples *and* operators: every parameter is
a per-row tensor of shape (B, 1) (or anything that broadcasts to it: (B,), (1, 1), a float),
so one call can solve trajectories of many operators at once. Every solver takes initial
conditions ``u0`` (B, nx), the physical output times ``t`` (nt,) starting at ``t[0]``
(float64; a tensor or anything ``torch.as_tensor`` accepts) and returns (B, nt, nx) on
u0's device in u0's dtype (float64 by default, float32 supported). Python loops run over
time steps only, never over grid points, samples or operators.

The discretisations are those of :mod:`lemon_pl.data.solvers` (see there for the physics):

* ``conservation_law``: MUSCL reconstruction with the monotonised-central limiter, Rusanov
  fluxes with the wave speed max|f'(u)| between the two states, the central viscous flux and
  SSP-RK3 at CFL 0.4 (burgers, sin and cubic fluxes). The limiter is evaluated in the
  equivalent form s/2 = sign * min(|dl + dr| / 4, |dl|, |dr|) (the same numbers: the
  factors are powers of two), and for the sin flux max(|cos a|, |cos b|) =
  sqrt(1 - min(sin^2 a, sin^2 b)) reuses the flux's sines;
* ``reaction_diffusion``: Strang splitting, half diffusion / reaction / half diffusion, with
  the exact semigroup of the periodic 3-point Laplacian (applied in Fourier space; the two
  half steps that meet between consecutive sub-steps of one frame are applied as one full
  step, identical in exact arithmetic) and the exact logistic or ``substeps`` RK4 reaction
  steps; sub-steps of at most ``max_dt`` landing on every frame (as numpy). With
  :func:`set_compile` the propagator is applied in real space instead, as a stencil of its
  largest entries (13-21 taps; the rest lie below the working dtype's rounding), fused with
  the reaction into one compiled call per frame interval (float64: 8e-14 from the Fourier
  path). The families pass ``max_dt = t_final / RD_DIVISIONS[dtype]``: numpy's 256 in float64,
  128 in float32, where it is the more accurate choice (see ``RD_DIVISIONS``), and
  ``substeps = RD_RK4_SUBSTEPS[dtype]`` RK4 steps per reaction step: numpy's 2 in float64, 1 in
  float32 (as accurate there; see ``RD_RK4_SUBSTEPS``);
* ``linear_reaction_diffusion``: the exact Fourier propagator exp((rho - nu k^2) t);
* ``porous_medium``: the conservative 3-point scheme for (u^m)_xx with Heun (SSP-RK2) steps
  of the adaptive monotone size cfl dx^2 / (2 max m u^(m-1)).

**Adaptive steps per row** (:func:`adaptive_march`): each trajectory takes its own stable step
from its own state, lands exactly on every output time (the numpy rule: dt = min(stable,
t_next - t), a frame is reached within 1e-12) and then goes on to the next frame on its own;
rows that have reached the last frame are masked with ``torch.where`` (bitwise unchanged). A
row's numbers therefore do not depend on what else is in the batch: the solution of one row
equals numpy's for that row alone (numpy's march takes the smallest step of its whole batch).
A row whose state becomes non-finite is marked NaN from the frame it was working on (the
generator rejects it) while the others go on; numpy's march stops the whole batch instead.
On CUDA the march checks for completion every ``check_every`` steps (one host sync), on CPU
every step (a sync costs nothing there).

Reproducibility: a row's result does not depend on the other rows, the batch size or (on
CPU, for nx a multiple of 16 and up to 2 threads) the number of threads: the transcendental
functions run on tensors whose rows are whole multiples of the SIMD width.

Speed: eagerly every elementwise operation is one pass over the batch, which on CPU is bound
by memory and per-operation overhead (a batch of ~400 trajectories, which stays in the caches,
is faster than a larger one). :func:`set_compile` runs the step functions (one SSP-RK3 or
Heun step plus the next stable step; the RK4 reaction) through ``torch.compile`` instead, which
fuses each into a few kernels: several times faster for the FV, porous and reaction-diffusion
families, identical to round-off, at the price of ~10-20 s of compilation per step function
and dtype in a fresh process (cached on disk by inductor). Eagerly the splitting solver's
rfft/irfft pair per sub-step bounds the reaction-diffusion families; compiled, the per-call
overhead of the fused frame function (~0.1 ms on CPU) is a large part of what is left.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from lemon_pl.data.ics import L_DOMAIN

F64 = torch.float64

__all__ = [
    "frame_steps", "frame_times", "param", "fd_laplacian_symbol", "wavenumbers", "adaptive_march",
    "conservation_law", "reaction_diffusion", "linear_reaction_diffusion", "porous_medium", "CFL_FV",
    "CFL_POROUS", "set_compile", "compile_enabled", "RD_DIVISIONS", "RD_RK4_SUBSTEPS",
]

CFL_FV = 0.4
CFL_POROUS = 0.45
FLUXES = ("burgers", "sin", "cubic")
KINETICS = ("logistic", "bistable", "square")
_INV_PI = 1.0 / math.pi


# --------------------------------------------------------------------------- helpers


_COMPILE = {"enabled": False}
_COMPILED: dict = {}


def set_compile(enabled: bool = True) -> None:
    """Run the step functions through ``torch.compile`` (fused kernels: C++/OpenMP on CPU, Triton
    on CUDA) instead of eagerly. Off by default: compiling takes tens of seconds per step
    function, dtype and flux kind in a fresh process (inductor caches the kernels on disk), and
    the fused kernels round differently from the eager operations (the same discretisation;
    differences at round-off)."""
    _COMPILE["enabled"] = bool(enabled)
    if enabled:
        import torch._dynamo
        import torch._inductor.config

        # one graph per (function, flux / kinetics / exponents, dtype, device, viscous): more than 8
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
        # compile in this process: generator workers are daemonic (no child processes allowed)
        torch._inductor.config.compile_threads = 1


def compile_enabled() -> bool:
    return _COMPILE["enabled"]


def _compiled(fn: Callable) -> Callable:
    if not _COMPILE["enabled"]:
        return fn
    if fn not in _COMPILED:
        # automatic dynamic shapes: a second batch size recompiles once with a symbolic batch
        # dimension; the grid stays static (dx etc. are folded from it). The RK4 reaction chains
        # 8 polynomial stages: inlined into one expression, inductor's lowering blows up (minutes
        # for the square kinetics), so its reused intermediates are materialised earlier.
        options = {"realize_opcount_threshold": 16} if fn.__name__ in ("_react", "_rd_frame") else None
        _COMPILED[fn] = torch.compile(fn, options=options)
    return _COMPILED[fn]


def frame_times(t, device=None) -> tuple[list[float], Tensor]:
    """The output times as a host list (exact float64 values) and a float64 tensor on ``device``."""
    tt = torch.as_tensor(t, dtype=F64).detach().reshape(-1).cpu()
    if tt.numel() < 1:
        raise ValueError("t must hold at least one output time")
    return tt.tolist(), tt.to(device)


def frame_steps(t: Sequence[float], max_dt: float) -> list[int]:
    """Equal sub-steps between consecutive output times so that each is <= max_dt (numpy's rule)."""
    return [max(1, int(math.ceil((b - a) / max_dt - 1e-9))) for a, b in zip(t[:-1], t[1:])]


def param(value, u0: Tensor, name: str = "parameter") -> Tensor:
    """A per-row parameter as a (B, 1) tensor in u0's dtype and device."""
    p = torch.as_tensor(value).to(device=u0.device, dtype=u0.dtype)
    if p.ndim == 0:
        p = p.reshape(1, 1)
    elif p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or p.shape[1] != 1 or p.shape[0] not in (1, u0.shape[0]):
        raise ValueError(f"{name} must broadcast to ({u0.shape[0]}, 1), got shape {tuple(p.shape)}")
    return p.expand(u0.shape[0], 1)


def _check_u0(u0: Tensor) -> Tensor:
    if not isinstance(u0, Tensor):
        u0 = torch.as_tensor(u0, dtype=F64)
    if u0.ndim != 2:
        raise ValueError(f"u0 must have shape (B, nx), got {tuple(u0.shape)}")
    if not u0.is_floating_point() or u0.is_complex():
        raise ValueError(f"u0 must be a real floating tensor, got {u0.dtype}")
    return u0.contiguous()


def wavenumbers(nx: int, dtype: torch.dtype = F64, device=None) -> Tensor:
    """Angular wavenumbers of ``torch.fft.rfft`` on the periodic domain of length 2."""
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=L_DOMAIN / nx)
    return torch.as_tensor(k, dtype=dtype, device=device)


def fd_laplacian_symbol(nx: int, dtype: torch.dtype = F64, device=None) -> Tensor:
    """Fourier symbol of the periodic 3-point Laplacian: -(4/dx^2) sin^2(k dx / 2) (float64 values)."""
    dx = L_DOMAIN / nx
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=dx)
    return torch.as_tensor(-(4.0 / dx**2) * np.sin(k * dx / 2) ** 2, dtype=dtype, device=device)


def _fail_fill(out: Tensor, fail_at: Tensor) -> Tensor:
    """NaN in frames >= fail_at (per row); rows with fail_at == nt are untouched."""
    nt = out.shape[1]
    frames = torch.arange(nt, device=out.device)
    bad = (frames[None, :] >= fail_at[:, None])[..., None]
    return out.masked_fill_(bad, float("nan"))


# --------------------------------------------------------------------------- adaptive march


def adaptive_march(state0: Tensor, t, advance: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
                   max_dt0: Tensor, frame: Callable[[Tensor], Tensor] | None = None,
                   check_every: int | None = None) -> Tensor:
    """Explicit time stepping with a step per row that lands exactly on every output time.

    ``state0`` (B, ...) is the initial state and ``frame(state)`` (B, nx) what is recorded
    (default: the state itself). ``max_dt0`` is the stable step of every row of ``state0`` as a
    float64 (B, 1) tensor, and ``advance(state, dt)`` advances every row by its own ``dt``
    (B, 1) (in the state's dtype; 0 for rows that are done, whose result is discarded) and
    returns ``(new_state, its stable steps)``. A stable step that is NaN or <= 0 marks the row as
    blown up: its frames from the one being worked on become NaN (+inf: no limit, the row goes
    straight to its next frame). Times are kept in float64 whatever the state's dtype.
    Returns (B, nt, nx).

    The step rule is numpy's ``march`` for every row alone: dt = min(stable, t_next - t), and a
    frame is reached when t >= t_next - 1e-12 max(1, |t_next|) (then t = t_next exactly).
    """
    frame = frame or (lambda s: s)
    _, tt = frame_times(t, state0.device)
    nt = tt.numel()
    b = state0.shape[0]
    dev, dtype = state0.device, state0.dtype
    f0 = frame(state0)
    out = torch.empty((b, nt + 1) + tuple(f0.shape[1:]), dtype=dtype, device=dev)  # frame nt: scratch
    out[:, 0] = f0
    if nt == 1 or b == 0:
        return out[:, :nt]
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 16
    # the time and landing threshold of frame j (index nt: a harmless duplicate of the last)
    t_next = torch.cat([tt, tt[-1:]])
    land = t_next - 1e-12 * t_next.abs().clamp_min(1.0)
    tc = tt[:1].expand(b, 1).clone()
    j = torch.ones(b, dtype=torch.long, device=dev)
    tn, tl = t_next[j][:, None], land[j][:, None]
    fail_at = torch.full((b,), nt, dtype=torch.long, device=dev)
    active = torch.ones((b, 1), dtype=torch.bool, device=dev)
    rows = torch.arange(b, device=dev)
    scratch = torch.full_like(j, nt)
    zero = torch.zeros((), dtype=F64, device=dev)
    mask_shape = (b,) + (1,) * (state0.ndim - 1)
    state, md = state0, max_dt0
    # With a sync every step (CPU, where it costs nothing) the host knows whether every row is
    # active and fine (no masking) and whether any row reached a frame (else no bookkeeping);
    # on CUDA everything is done unconditionally and the host checks every ``check_every`` steps.
    host = check_every == 1
    all_active = True
    while True:
        for _ in range(check_every):
            ok = md > 0  # False for NaN
            if host and all_active and bool(ok.all()):
                dt = torch.minimum(md, tn - tc)
                state, md = advance(state, dt.to(dtype))
            else:
                fail_at = torch.where((active & ~ok)[:, 0], j, fail_at)
                active = active & ok
                dt = torch.where(active, torch.minimum(md, tn - tc), zero)
                new, md_new = advance(state, dt.to(dtype))
                state = torch.where(active.view(mask_shape), new, state)
                md = torch.where(active, md_new, md)
                all_active = False
            tc = tc + dt
            landed = active & (tc >= tl)
            if host and not bool(landed.any()):
                continue
            out[rows, torch.where(landed[:, 0], j, scratch)] = frame(state)
            tc = torch.where(landed, tn, tc)
            j = j + landed[:, 0]
            tn, tl = t_next[j][:, None], land[j][:, None]
            active = active & (j < nt)[:, None]
            if host:
                all_active = bool(active.all())
        if not bool(active.any()):
            break
    return _fail_fill(out[:, :nt], fail_at)


# --------------------------------------------------------------------------- finite volumes
#
# The step functions are module-level functions of tensors and constants (the flux kind, the
# exponents), so that ``torch.compile`` (see :func:`set_compile`) can fuse each of them into a
# few kernels; eagerly they run as they are.


def _fv_pad(u: Tensor) -> Tensor:
    """(B, n) -> (B, n+3) periodic: [u_{n-1} | u_0 .. u_{n-1} | u_0 u_1]."""
    return torch.cat([u[:, -1:], u, u[:, :2]], dim=1)


def _fv_dflux(p: Tensor, kh: Tensor, akh: Tensor, nud: Tensor, flux: str, viscous: bool) -> Tensor:
    """F_{i+1/2} - F_{i-1/2} (B, n) from the padded state p (B, n+3)."""
    n = p.shape[1] - 3
    e = p[:, 1:] - p[:, :-1]  # (B, n+2): e_j = u_j - u_{j-1}, j = 0..n+1
    ae = e.abs()
    # MC slope / 2 = sign * min(|dl + dr| / 4, |dl|, |dr|) where dl, dr agree in sign, else 0;
    # there |dl + dr| = |dl| + |dr|
    m = torch.minimum(torch.minimum(ae[:, :-1], ae[:, 1:]), (ae[:, :-1] + ae[:, 1:]) * 0.25)  # cells 0..n
    se = torch.sign(e)
    hs = (se[:, :-1] + se[:, 1:]) * m  # twice the half slope (the sign sum is +-2 or 0 where m != 0)
    left = torch.add(p[:, 1:n + 1], hs[:, :n], alpha=0.5)  # interface i+1/2, i = 0..n-1
    right = torch.add(p[:, 2:n + 2], hs[:, 1:], alpha=-0.5)
    if flux == "burgers":
        g = torch.addcmul(left * left, right, right)
        a = torch.maximum(left.abs(), right.abs())
    elif flux == "cubic":
        l2, r2 = left * left, right * right
        a = torch.maximum(l2, r2)
        g = torch.addcmul(l2 * left, r2, right)
    else:
        sl, sr = torch.sin(left), torch.sin(right)
        g = sl + sr
        # max(|cos L|, |cos R|) = sqrt(1 - min(sin^2)), and 1 where a multiple of pi lies between
        # (floor(x / pi) as floor(x * (1/pi)): where the two differ, |cos x| = 1 to round-off anyway)
        peak = torch.floor(left * _INV_PI) != torch.floor(right * _INV_PI)
        a = torch.sqrt(1.0 - torch.minimum(sl * sl, sr * sr))
        a = torch.where(peak, torch.ones_like(a), a)
    f = torch.addcmul(g * kh, a * (right - left), akh)
    if viscous:
        f = torch.addcmul(f, e[:, 1:n + 1], nud)
    return f - torch.cat([f[:, -1:], f[:, :-1]], dim=1)


def _fv_step(p: Tensor, c: Tensor, kh: Tensor, akh: Tensor, nud: Tensor, flux: str, viscous: bool) -> Tensor:
    """One SSP-RK3 step of every row, c = -dt/dx (B, 1); padded state in and out."""
    n = p.shape[1] - 3
    u = p[:, 1:n + 1]
    u1 = torch.addcmul(u, _fv_dflux(p, kh, akh, nud, flux, viscous), c)
    u2 = torch.lerp(u, torch.addcmul(u1, _fv_dflux(_fv_pad(u1), kh, akh, nud, flux, viscous), c), 0.25)
    u3 = torch.lerp(u, torch.addcmul(u2, _fv_dflux(_fv_pad(u2), kh, akh, nud, flux, viscous), c), 2.0 / 3.0)
    return _fv_pad(u3)


def _fv_max_dt(p: Tensor, cfl: float, abs_k: Tensor, dt_visc: Tensor, flux: str) -> Tensor:
    """The stable step (B, 1) float64 of every row: cfl dx / max|k g'(u)|, capped by the viscous limit."""
    n = p.shape[1] - 3
    cfl_dx = cfl * L_DOMAIN / n
    u = p[:, 1:n + 1]
    if flux == "sin":
        smax = torch.cos(u).abs().amax(dim=1, keepdim=True)
    else:
        smax = u.abs().amax(dim=1, keepdim=True)
        if flux == "cubic":
            smax = smax * smax
    dt = cfl_dx / (abs_k * smax.to(F64)).clamp_min(1e-8)
    return torch.minimum(dt, dt_visc)


def _fv_advance(p: Tensor, dt: Tensor, kh: Tensor, akh: Tensor, nud: Tensor, abs_k: Tensor, dt_visc: Tensor,
                flux: str, viscous: bool, cfl: float) -> tuple[Tensor, Tensor]:
    """One step of every row by its own dt, and the stable steps of the result (the compiled unit)."""
    n = p.shape[1] - 3
    q = _fv_step(p, dt * (-n / L_DOMAIN), kh, akh, nud, flux, viscous)
    return q, _fv_max_dt(q, cfl, abs_k, dt_visc, flux)


def conservation_law(u0: Tensor, t, k, nu=None, flux: str = "burgers", cfl: float = CFL_FV,
                     check_every: int | None = None) -> Tensor:
    """u_t + k g(u)_x = nu u_xx with g = u^2/2 ("burgers"), sin u ("sin") or u^3/3 ("cubic").

    MUSCL-MC + Rusanov + central viscous flux + SSP-RK3, per-row steps
    min(cfl dx / max|k g'(u)|, cfl dx^2 / (2 nu)) (see the module docstring). ``k`` and ``nu``
    are per-row parameters; ``nu=None`` (or all zero) is the inviscid law.
    """
    if flux not in FLUXES:
        raise ValueError(f"flux must be one of {FLUXES}, got {flux!r}")
    u0 = _check_u0(u0)
    b, n = u0.shape
    dx = L_DOMAIN / n
    k = param(k, u0, "k")
    kh = {"burgers": 0.25, "sin": 0.5, "cubic": 1.0 / 6.0}[flux] * k  # 0.5 k (g(L) + g(R)) = kh G
    akh = -0.5 * k.abs()
    abs_k = k.abs().to(F64)
    viscous = nu is not None and bool((torch.as_tensor(nu) != 0).any())
    nud = torch.zeros_like(k)
    dt_visc = torch.full_like(abs_k, math.inf)
    if viscous:
        nu = param(nu, u0, "nu")
        nud = -nu / dx
        nu64 = nu.to(F64)
        dt_visc = torch.where(nu64 > 0, cfl * dx**2 / (2 * nu64), dt_visc)
    fn = _compiled(_fv_advance)

    def advance(p: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        return fn(p, dt, kh, akh, nud, abs_k, dt_visc, flux, viscous, cfl)

    p0 = _fv_pad(u0)
    return adaptive_march(p0, t, advance, _fv_max_dt(p0, cfl, abs_k, dt_visc, flux),
                          frame=lambda p: p[:, 1:n + 1], check_every=check_every)


# --------------------------------------------------------------------------- reaction-diffusion


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype]


def _logistic_step(u: Tensor, e: Tensor, em1: Tensor) -> Tensor:
    """The exact logistic flow u e / (1 + u (e - 1)), e = exp(rho h) per row."""
    return (u * e).div_(torch.addcmul(e.new_ones(()), u, em1))


def _rk4_g(u: Tensor, a1: Tensor, ma: Tensor, kinetics: str) -> Tensor:
    if kinetics == "bistable":  # u (1-u)(u-a) = u (u (1 + a - u) - a)
        return torch.addcmul(ma, a1 - u, u) * u
    w = torch.addcmul(u, u, u, value=-1.0)  # (u (1-u))^2
    return w * w


def _rk4_reaction(u: Tensor, sig: Tensor, half: Tensor, sixth: Tensor, a1: Tensor, ma: Tensor, kinetics: str,
                  substeps: int) -> Tensor:
    """``substeps`` RK4 steps of u' = rho g(u) with per-row sig = rho h / substeps."""
    for _ in range(substeps):
        k1 = _rk4_g(u, a1, ma, kinetics)
        k2 = _rk4_g(torch.addcmul(u, k1, half), a1, ma, kinetics)
        k3 = _rk4_g(torch.addcmul(u, k2, half), a1, ma, kinetics)
        k4 = _rk4_g(torch.addcmul(u, k3, sig), a1, ma, kinetics)
        acc = torch.add(k1, k2, alpha=2.0).add_(k3, alpha=2.0).add_(k4)
        u = torch.addcmul(u, acc, sixth)
    return u


#: Strang sub-steps per ``t_final`` of the reaction-diffusion families (``max_dt = t_final / N``).
#: float64 takes numpy's 256. In float32 the rounding of every sub-step, not the splitting error,
#: bounds the accuracy, and half as many sub-steps are *more* accurate: the largest error against
#: a float64 solution at t_final / 4096 is 5.4e-6 against 1.5e-5 (logistic), 5.8e-6 against
#: 9.6e-6 (bistable) and 4.4e-6 against 9.9e-6 (square logistic) for 50 initial conditions, and
#: float64 numpy's own is 6e-7 to 1.4e-6 (``tests/data/test_torch_rd.py`` checks the ordering).
RD_DIVISIONS = {torch.float64: 256, torch.float32: 128}

#: RK4 steps per reaction step of the bistable and square-logistic families. float64 takes
#: numpy's 2. In float32 one is as accurate: at t_final / 128 the largest error against the
#: float64 solution at t_final / 4096 is 5.8e-6 with one and with two (bistable), 5.9e-6 against
#: 5.3e-6 (square logistic), over 4 operators x 50 initial conditions; the RK4 error of one step
#: of rho h <= 0.03 is below 1e-9, under float32's rounding (``tests/data/test_torch_rd.py``).
RD_RK4_SUBSTEPS = {torch.float64: 2, torch.float32: 1}


def _propagator_stencil(nu64: Tensor, lap: Tensor, d: float, n: int, dtype: torch.dtype,
                        max_half_width: int) -> Tensor | None:
    """The taps (B, 2J+1), offsets -J..J, of the exact periodic propagator exp(d nu D2) in real
    space, or None when it is wider than ``max_half_width``.

    The propagator is the circulant whose first column is irfft(exp(d nu lambda_k)) (computed in
    float64); its entries fall off like (d nu / dx^2)^|j| / |j|!, so at the step sizes of these
    families (d nu / dx^2 < 0.1) J is 6-7 in float32 and about 10 in float64 before the entries
    drop below 1e-9 or 1e-16 of the largest, far under the working dtype's rounding."""
    col = torch.fft.irfft(torch.exp((d * nu64) * lap), n=n, dim=-1)  # (B, n)
    offsets = torch.arange(n, device=col.device)
    dist = torch.minimum(offsets, n - offsets)
    tol = 1e-16 if dtype == F64 else 1e-9
    kept = dist[col.abs().amax(0) > tol * col.abs().amax()]
    half = int(kept.max()) if kept.numel() else 0
    if half > max_half_width:
        return None
    return col[:, torch.arange(-half, half + 1, device=col.device) % n].to(dtype).contiguous()


def _stencil(u: Tensor, w: Tensor) -> Tensor:
    """Periodic real-space stencil with per-row taps ``w`` (B, 2J+1) (J static from the shape)."""
    half, n = (w.shape[1] - 1) // 2, u.shape[1]
    if half == 0:
        return u * w
    up = torch.cat((u[:, n - half:], u, u[:, :half]), dim=1)
    out = w[:, :1] * up[:, :n]
    for j in range(1, 2 * half + 1):
        out = out + w[:, j:j + 1] * up[:, j:j + n]
    return out


def _react(u: Tensor, kinetics: str, c1: Tensor, c2: Tensor, c3: Tensor, a1: Tensor, ma: Tensor,
           substeps: int) -> Tensor:
    if kinetics == "logistic":  # c1 = e, c2 = e - 1
        return _logistic_step(u, c1, c2)
    return _rk4_reaction(u, c1, c2, c3, a1, ma, kinetics, substeps)  # c = sig, half, sixth


def _rd_frame(u: Tensor, w_half: Tensor, w_full: Tensor, kinetics: str, c1: Tensor, c2: Tensor, c3: Tensor,
              a1: Tensor, ma: Tensor, substeps: int, ns: int) -> Tensor:
    """One frame interval of ``ns`` Strang sub-steps in real space: D(h/2) R (D(h) R)^(ns-1) D(h/2)."""
    for s in range(ns):
        u = _react(_stencil(u, w_half if s == 0 else w_full), kinetics, c1, c2, c3, a1, ma, substeps)
    return _stencil(u, w_half)


def reaction_diffusion(u0: Tensor, t, nu, rho, kinetics: str = "logistic", a=None, *, max_dt: float,
                       substeps: int = 2) -> Tensor:
    """u_t = nu u_xx + rho f(u) by Strang splitting with exact 3-point-Laplacian diffusion.

    ``kinetics``: "logistic" f = u(1-u) (exact reaction step), "bistable" f = u(1-u)(u-a) or
    "square" f = u^2 (1-u)^2 (``substeps`` RK4 steps per reaction step). Each frame interval
    is cut into the fewest equal sub-steps of at most ``max_dt`` (the same for every row).
    The diffusion propagators exp(h nu D2) are computed in float64 and cast to the working
    dtype. Eagerly the state between sub-steps is kept in Fourier space (one rfft/irfft pair per
    sub-step). With :func:`set_compile` the propagator is applied in real space as its
    (truncated, see :func:`_propagator_stencil`) stencil, fused with the reaction into one
    compiled function per frame interval: the same operator to below the working dtype's
    rounding, without FFTs (a propagator too wide for a stencil keeps the Fourier path).
    """
    if kinetics not in KINETICS:
        raise ValueError(f"kinetics must be one of {KINETICS}, got {kinetics!r}")
    u0 = _check_u0(u0)
    b, n = u0.shape
    dtype, dev = u0.dtype, u0.device
    cdtype = _complex_of(dtype)
    times, _ = frame_times(t)
    nt = len(times)
    out = torch.empty((b, nt, n), dtype=dtype, device=dev)
    out[:, 0] = u0
    if nt == 1 or b == 0:
        return out
    nu64 = param(nu, u0, "nu").to(F64)
    rho64 = param(rho, u0, "rho").to(F64)
    lap = fd_laplacian_symbol(n, device=dev)[None, :]
    a1 = ma = torch.zeros((b, 1), dtype=dtype, device=dev)
    if kinetics == "bistable":
        a = param(a, u0, "a")
        a1, ma = 1.0 + a, -a

    def coefficients(h: float) -> tuple[Tensor, Tensor, Tensor]:
        """The reaction's per-row constants for a sub-step h: (e, e - 1, unused) for the exact
        logistic flow, e = exp(rho h); (sig, sig / 2, sig / 6) for RK4, sig = rho h / substeps."""
        if kinetics == "logistic":
            e64 = torch.exp(rho64 * h)
            e = e64.to(dtype)
            return e, (e64 - 1.0).to(dtype), e
        sig64 = rho64 * (h / substeps)  # RK4 on u' = rho g(u): rho folded into the step
        return sig64.to(dtype), (0.5 * sig64).to(dtype), (sig64 / 6.0).to(dtype)

    # every frame interval: its sub-step h (the cache key, rounded) and their number
    subs = [(round((times[i + 1] - times[i]) / ns, 15), ns) for i, ns in enumerate(frame_steps(times, max_dt))]
    consts = {h: coefficients(h) for h in dict(subs)}  # each distinct sub-step once
    if compile_enabled():
        stencils = {h: (_propagator_stencil(nu64, lap, 0.5 * h, n, dtype, n // 8),
                        _propagator_stencil(nu64, lap, h, n, dtype, n // 8)) for h in consts}
        if all(w is not None for pair in stencils.values() for w in pair):
            frame = _compiled(_rd_frame)  # one compiled call per frame interval (~0.1 ms of overhead
            u = u0                          # each on CPU; 3 per call compiled 2x longer, no faster)
            for i, (h, ns) in enumerate(subs):
                u = frame(u, *stencils[h], kinetics, *consts[h], a1, ma, substeps, ns)
                out[:, i + 1] = u
            return out

    props: dict[float, Tensor] = {}

    def diffuse(v: Tensor, d: float) -> Tensor:
        key = round(d, 15)
        if key not in props:
            props[key] = torch.exp((d * nu64) * lap).to(cdtype)
        return v.mul_(props[key])

    react = _compiled(_react)
    v = torch.fft.rfft(u0, dim=-1)
    for i, (h, ns) in enumerate(subs):
        for s in range(ns):
            diffuse(v, 0.5 * h if s == 0 else h)  # the halves of consecutive sub-steps merged
            u = react(torch.fft.irfft(v, n=n, dim=-1), kinetics, *consts[h], a1, ma, substeps)
            v = torch.fft.rfft(u, dim=-1)
        out[:, i + 1] = torch.fft.irfft(diffuse(v, 0.5 * h), n=n, dim=-1)
    return out


def linear_reaction_diffusion(u0: Tensor, t, nu, rho) -> Tensor:
    """u_t = nu u_xx + rho u, exact: every Fourier mode times exp((rho - nu k^2) t)."""
    u0 = _check_u0(u0)
    b, n = u0.shape
    dtype, dev = u0.dtype, u0.device
    times, _ = frame_times(t)
    out = torch.empty((b, len(times), n), dtype=dtype, device=dev)
    out[:, 0] = u0
    if b == 0:
        return out
    k = wavenumbers(n, device=dev)[None, :]
    symbol = param(rho, u0, "rho").to(F64) - param(nu, u0, "nu").to(F64) * k * k  # (B, nk)
    uh = torch.fft.rfft(u0, dim=-1)
    cdtype = _complex_of(dtype)
    for i in range(1, len(times)):
        prop = torch.exp(symbol * times[i]).to(cdtype)
        out[:, i] = torch.fft.irfft(uh * prop, n=n, dim=-1)
    return out


# --------------------------------------------------------------------------- porous medium


def _pm_pad(u: Tensor) -> Tensor:
    """(B, n) -> (B, n+2) periodic: [u_{n-1} | u_0 .. u_{n-1} | u_0]."""
    return torch.cat([u[:, -1:], u, u[:, :1]], dim=1)


def _pm_lap(p: Tensor, masks: tuple[Tensor, ...], exps: tuple[int, ...]) -> Tensor:
    """w_{i+1} + w_{i-1} - 2 w_i (B, n) of w = u^m, per-row m from the exponents ``exps``
    (``masks[i]``: the rows with m <= exps[i], for all but the last). u^e is the chain
    ((u u) u) ... u for every row, so a row's numbers do not depend on the exponents of the others."""
    n = p.shape[1] - 2
    w, pw, e = None, p, 1
    for i, target in enumerate(exps):
        while e < target:
            pw, e = pw * p, e + 1
        w = pw if w is None else torch.where(masks[i - 1], w, pw)
    return torch.add(w[:, 2:], w[:, :-2]).add_(w[:, 1:n + 1], alpha=-2.0)


def _pm_step(p: Tensor, c: Tensor, masks: tuple[Tensor, ...], exps: tuple[int, ...]) -> Tensor:
    """One Heun (SSP-RK2) step of every row, c = dt/dx^2 (B, 1); padded state in and out."""
    n = p.shape[1] - 2
    u = p[:, 1:n + 1]
    u1 = torch.addcmul(u, _pm_lap(p, masks, exps), c)
    return _pm_pad((u + torch.addcmul(u1, _pm_lap(_pm_pad(u1), masks, exps), c)) * 0.5)


def _pm_max_dt(p: Tensor, m64: Tensor, cfl: float) -> Tensor:
    """cfl dx^2 / (2 max m u^(m-1)) per row (B, 1) float64: the monotone step."""
    n = p.shape[1] - 2
    cfl_dx2 = cfl * (L_DOMAIN / n) ** 2
    umax = p[:, 1:n + 1].abs().amax(dim=1, keepdim=True).to(F64)
    return cfl_dx2 / (2 * (m64 * umax ** (m64 - 1)).clamp_min(1e-8))


def _pm_advance(p: Tensor, dt: Tensor, masks: tuple[Tensor, ...], m64: Tensor, exps: tuple[int, ...],
                cfl: float) -> tuple[Tensor, Tensor]:
    """One Heun step of every row by its own dt, and the stable steps of the result (the compiled unit)."""
    n = p.shape[1] - 2
    q = _pm_step(p, dt * (1.0 / (L_DOMAIN / n) ** 2), masks, exps)
    return q, _pm_max_dt(q, m64, cfl)


def porous_medium(u0: Tensor, t, m, cfl: float = CFL_POROUS, check_every: int | None = None) -> Tensor:
    """u_t = (u^m)_xx, conservative 3-point scheme, Heun steps of cfl dx^2 / (2 max m u^(m-1)).

    ``m`` is a per-row integer exponent (2, 3, 4, ...); a batch may mix them.
    """
    u0 = _check_u0(u0)
    b, n = u0.shape
    m = param(m, u0, "m").round()
    m64 = m.to(F64)
    exps = tuple(sorted({int(v) for v in m64.reshape(-1).tolist()})) if b else (2,)
    if exps[0] < 1:
        raise ValueError(f"porous_medium needs integer exponents m >= 1, got {exps}")
    # masks[i]: the rows with m <= exps[i] (they keep u^m from an earlier exponent of the chain)
    masks = tuple(m64 <= e for e in exps[:-1])
    fn = _compiled(_pm_advance)

    def advance(p: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        return fn(p, dt, masks, m64, exps, cfl)

    p0 = _pm_pad(u0)
    return adaptive_march(p0, t, advance, _pm_max_dt(p0, m64, cfl), frame=lambda p: p[:, 1:n + 1],
                          check_every=check_every)
