"""Torch ports of the spectral solvers of :mod:`lemon_pl.data.solvers`, batched with per-row parameters.

Same code on CPU and CUDA, float64 (complex128) by default and float32 (complex64) supported.
Every solver takes initial conditions ``u0`` (B, nx), physical output times ``t`` (nt,)
starting at 0 (float64; a tensor or anything ``torch.as_tensor`` accepts) and per-row
parameters of shape (B, 1) (or (B,), (1, 1), a 0-d tensor or a float: they broadcast), and
returns (B, nt, nx) on u0's device in u0's dtype. All work is vectorised over the batch and
the grid; Python loops run over time steps only.

Coefficients (symbols, propagators, ETDRK4 phi-functions, the master-equation
eigendecomposition) are built in float64 from the parameters upcast to float64 and cast to
the working dtype afterwards, so a float32 solve loses no accuracy there; pass float64
parameter tensors to keep the decimal parameter values exact.

Solvers (the physics and step rules of families.py / solvers.py):

* ``evolve_linear`` / ``evolve_second_order``: exact Fourier propagators, per-row symbols
  (B, nk) -> heat, advection, wave, Klein-Gordon;
* ``leapfrog_wave``: Stormer-Verlet with a spectral Laplacian and the Taylor start
  (velocity Verlet with u_t(0) = 0), step rule from the largest speed in the batch ->
  Sine-Gordon;
* ``etdrk4``: Cox-Matthews ETDRK4 with Kassam-Trefethen contour coefficients, per-row
  linear symbols (B, nk) -> KdV (2/3 dealiasing);
* ``master_equation_matrix`` / ``evolve_master``: the nearest-neighbour master equation,
  propagated through its symmetric eigendecomposition -> Fokker-Planck.

Irfft and the Nyquist mode: ``np.fft.irfft`` (and torch on CPU) ignore the imaginary part of
the Nyquist coefficient, but some cuFFT C2R plans do not (pytorch/pytorch#154496). Where a
solver produces a genuinely complex Nyquist coefficient (the advection shift, the KdV state
under exp(i d^2 k^3 t)) it is made real explicitly, which is exactly what numpy computes.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from lemon_pl.data.constants import FP_AMPLITUDE, FP_LENGTH_UM, FP_RADIUS, FP_TEMPERATURE, K_B
from lemon_pl.data.ics import L_DOMAIN

F64 = torch.float64
C128 = torch.complex128

__all__ = [
    "wavenumbers", "evolve_linear", "evolve_second_order", "leapfrog_wave", "etdrk4_coefficients",
    "etdrk4", "master_equation_matrix", "evolve_master", "fplanck_diffusivity",
    "heat", "advection", "wave", "klein_gordon", "sine_gordon", "kdv", "fplanck",
]


# --------------------------------------------------------------------------- helpers


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    if dtype == torch.float32:
        return torch.complex64
    if dtype == torch.float64:
        return C128
    raise TypeError(f"u0 must be float32 or float64, got {dtype}")


def _check_u0(u0: Tensor) -> Tensor:
    if not isinstance(u0, Tensor):
        u0 = torch.as_tensor(u0, dtype=F64)
    if u0.ndim != 2:
        raise ValueError(f"u0 must have shape (B, nx), got {tuple(u0.shape)}")
    _complex_of(u0.dtype)
    return u0


def _times(t, device: torch.device) -> tuple[list[float], Tensor]:
    """(host list of the output times, float64 tensor on ``device``)."""
    tt = torch.as_tensor(t, dtype=F64)
    if tt.ndim != 1 or tt.numel() < 1:
        raise ValueError(f"t must be a non-empty 1-D tensor of output times, got shape {tuple(tt.shape)}")
    host = tt.detach().cpu().tolist()
    if host[0] != 0.0:
        raise ValueError(f"t must start at 0 (the time of u0), got t[0] = {host[0]}")
    return host, tt.to(device)


def _param(p, u0: Tensor, name: str = "parameter") -> Tensor:
    """Per-row parameter as a float64 (B, 1) or (1, 1) tensor on u0's device."""
    v = torch.as_tensor(p, dtype=F64, device=u0.device) if not isinstance(p, Tensor) else p.to(u0.device, F64)
    if v.ndim == 0:
        v = v.reshape(1, 1)
    elif v.ndim == 1:
        v = v.reshape(-1, 1)
    if v.ndim != 2 or v.shape[1] != 1 or v.shape[0] not in (1, u0.shape[0]):
        raise ValueError(f"{name} must have shape (B, 1) with B = {u0.shape[0]} (or broadcast), got {tuple(v.shape)}")
    return v


def _frame_steps(t: Sequence[float], max_dt: float) -> list[int]:
    """Equal sub-steps between consecutive output times, each <= max_dt (as solvers._frame_steps)."""
    return [max(1, int(math.ceil((b - a) / max_dt - 1e-9))) for a, b in zip(t[:-1], t[1:])]


def _irfft_real_nyquist(v: Tensor, nx: int) -> Tensor:
    """irfft that uses only the real part of the Nyquist coefficient on every backend."""
    if nx % 2 == 0:
        v = torch.cat((v[..., :-1], v[..., -1:].real.to(v.dtype)), dim=-1)
    return torch.fft.irfft(v, n=nx, dim=-1)


def _first_frame(out: Tensor, u0: Tensor) -> Tensor:
    out[:, 0] = u0  # as Family.solve: frame 0 is the IC itself, not irfft(rfft(u0))
    return out


def wavenumbers(nx: int, dtype: torch.dtype = F64, device=None) -> Tensor:
    """Angular wavenumbers of ``torch.fft.rfft`` on the periodic domain of length 2 (== solvers.wavenumbers)."""
    d = L_DOMAIN / nx
    freq = torch.arange(nx // 2 + 1, dtype=F64, device=device) * (1.0 / (nx * d))
    return ((2 * math.pi) * freq).to(dtype)


# --------------------------------------------------------------------------- exact linear


def evolve_linear(u0: Tensor, symbol: Tensor, t) -> Tensor:
    """Exact solution of u_t = S(d/dx) u; ``symbol`` (nk,) or per-row (B, nk), real or complex.

    The propagator exp(symbol t) (B, nt, nk) is formed in the symbol's precision (pass float64
    / complex128) and cast to u0's precision. The rfft coefficient at the Nyquist frequency is
    real, so only Re(prop) reaches the output there; that is applied explicitly.
    """
    u0 = _check_u0(u0)
    nx = u0.shape[-1]
    _, tt = _times(t, u0.device)
    sym = torch.as_tensor(symbol, device=u0.device)
    if sym.ndim == 1:
        sym = sym[None]
    uh = torch.fft.rfft(u0, dim=-1)
    if not sym.is_complex():
        prop = torch.exp_(sym[:, None, :] * tt.to(sym.dtype)[None, :, None])  # (B|1, nt, nk)
        return torch.fft.irfft(_scale_modes(uh, prop.to(u0.dtype)), n=nx, dim=-1)
    # exp((s + i w) t) = exp(s t) (cos w t + i sin w t): no complex exp/promotion (slow on CPU)
    tr = tt.to(sym.real.dtype)[None, :, None]
    theta = sym.imag[:, None, :] * tr
    re, im = torch.cos(theta), torch.sin_(theta)
    if bool(torch.any(sym.real != 0)):
        g = torch.exp_(sym.real[:, None, :] * tr)
        re, im = re.mul_(g), im.mul_(g)
    if nx % 2 == 0:
        im[..., -1] = 0.0
    prop = torch.complex(re.to(u0.dtype), im.to(u0.dtype))
    return torch.fft.irfft(uh[:, None, :] * prop, n=nx, dim=-1)


def _scale_modes(uh: Tensor, prop: Tensor) -> Tensor:
    """uh[:, None, :] * prop for a real prop (B|1, nt, nk), as a real multiply (no complex promotion)."""
    return torch.view_as_complex(torch.view_as_real(uh)[:, None] * prop[..., None])


def evolve_second_order(u0: Tensor, omega: Tensor, t) -> Tensor:
    """Exact solution of u_tt = -omega_k^2 u per Fourier mode with u_t(0) = 0; omega (nk,) or (B, nk)."""
    u0 = _check_u0(u0)
    nx = u0.shape[-1]
    _, tt = _times(t, u0.device)
    om = torch.as_tensor(omega, device=u0.device)
    if om.ndim == 1:
        om = om[None]
    prop = torch.cos_(om[:, None, :] * tt.to(om.dtype)[None, :, None]).to(u0.dtype)
    uh = torch.fft.rfft(u0, dim=-1)
    return torch.fft.irfft(_scale_modes(uh, prop), n=nx, dim=-1)


# --------------------------------------------------------------------------- leapfrog


def leapfrog_wave(u0: Tensor, t, speed2, force: Callable[[Tensor], Tensor],
                  substeps_per_unit: float = 512.0) -> Tensor:
    """u_tt = speed2 u_xx + force(u), u_t(0) = 0, Stormer-Verlet with a spectral Laplacian.

    ``speed2`` is a float or per-row (B, 1); ``force`` maps (B, nx) -> (B, nx) (close over
    per-row coefficients). All rows advance with one step h per frame, from the step rule of
    solvers.leapfrog_wave applied to the largest speed in the batch, max_dt = min(1 /
    substeps_per_unit, 0.25 / (sqrt(max speed2) k_max)): stable for every row, identical to
    the numpy solver for rows at the largest speed (and for every row when speed2 is shared,
    as in Sine-Gordon), and a smaller-than-needed step (a smaller discretisation error) for
    slower rows. Per-row step counts with masking would cost the fastest row's step count for
    every row anyway.
    """
    u0 = _check_u0(u0)
    nx = u0.shape[-1]
    th, _ = _times(t, u0.device)
    k = wavenumbers(nx, F64, u0.device)
    s2 = _param(speed2, u0, "speed2")
    lap = (-s2 * k**2).to(u0.dtype)  # (B|1, nk), real: the Nyquist coefficient stays real
    kmax = math.sqrt(float(s2.max())) * float(k.max())
    max_dt = min(1.0 / substeps_per_unit, 0.25 / kmax)

    def accel(u):
        return torch.fft.irfft(torch.fft.rfft(u, dim=-1) * lap, n=nx, dim=-1) + force(u)

    out = u0.new_empty((u0.shape[0], len(th), nx))
    out[:, 0] = u0
    u = u0.clone()
    v = torch.zeros_like(u0)
    a = accel(u)
    for i, n in enumerate(_frame_steps(th, max_dt)):
        h = (th[i + 1] - th[i]) / n
        for _ in range(n):  # velocity Verlet == leapfrog
            v_half = v + 0.5 * h * a
            u = u + h * v_half
            a = accel(u)
            v = v_half + 0.5 * h * a
        out[:, i + 1] = u
    return out


# --------------------------------------------------------------------------- ETDRK4


def etdrk4_coefficients(lin: Tensor, h: float, n_contour: int = 32) -> tuple[Tensor, ...]:
    """(e, e2, q, f1, f2, f3) for step h, each shaped like ``lin`` (..., nk), in complex128.

    Kassam-Trefethen: phi-functions as the mean over ``n_contour`` points of a unit circle
    around each L h (a trailing axis), so per-row symbols need no loop. Real parts are
    returned when ``lin`` is real (as solvers._etdrk4_coefficients).
    """
    lin = torch.as_tensor(lin)
    is_real = not lin.is_complex() or bool(torch.all(lin.imag == 0))
    lh = lin.to(C128) * h
    j = torch.arange(1, n_contour + 1, dtype=F64, device=lh.device)
    roots = torch.exp((2j * math.pi) * ((j - 0.5) / n_contour))  # full circle
    lr = lh[..., None] + roots
    lr2 = lr * lr
    lr3 = lr2 * lr
    elr = torch.exp(lr)
    e = torch.exp(lh)
    e2 = torch.exp(lh / 2)
    q = h * torch.mean((torch.exp(lr / 2) - 1) / lr, dim=-1)
    f1 = h * torch.mean((-4 - lr + elr * (4 - 3 * lr + lr2)) / lr3, dim=-1)
    f2 = h * torch.mean((2 + lr + elr * (-2 + lr)) / lr3, dim=-1)
    f3 = h * torch.mean((-4 - 3 * lr - lr2 + elr * (4 - lr)) / lr3, dim=-1)
    if is_real:
        return e.real, e2.real, q.real, f1.real, f2.real, f3.real
    return e, e2, q, f1, f2, f3


def etdrk4(u0: Tensor, t, lin: Tensor, nonlin: Callable[[Tensor], Tensor], max_dt: float,
           n_contour: int = 32) -> Tensor:
    """Integrate v_t = lin v + nonlin(v) for Fourier coefficients v = rfft(u), per-row ``lin``.

    ``lin``: (nk,) or (B, nk), real or complex (build it in float64). ``nonlin`` maps Fourier
    coefficients (B, nk) to Fourier coefficients (B, nk) in u0's complex dtype. Steps as
    solvers.etdrk4: ceil((t_{i+1} - t_i) / max_dt) equal steps per frame. The coefficients
    are computed once per distinct row of ``lin`` (torch.unique) and distinct step h (a cache
    local to this call), in complex128, then gathered to (B, nk) and cast.
    """
    u0 = _check_u0(u0)
    nx = u0.shape[-1]
    th, _ = _times(t, u0.device)
    cdt = _complex_of(u0.dtype)
    lin = torch.as_tensor(lin, device=u0.device)
    if lin.ndim == 1:
        lin = lin[None]
    rows = torch.view_as_real(lin.to(C128)).reshape(lin.shape[0], -1) if lin.is_complex() else lin.to(F64)
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    lin_u = torch.view_as_complex(uniq.reshape(uniq.shape[0], -1, 2).contiguous()) if lin.is_complex() else uniq

    def coefficients(h):
        cs = etdrk4_coefficients(lin_u, h, n_contour)
        if uniq.shape[0] > 1:
            cs = tuple(c[inverse] for c in cs)
        cs = cs[:4] + (2 * cs[4], cs[5])  # 2 f2: (na + nb) * (2 f2) == 2 (na + nb) * f2 exactly
        return tuple(c.to(cdt if c.is_complex() else u0.dtype) for c in cs)

    out = u0.new_empty((u0.shape[0], len(th), nx))
    out[:, 0] = u0
    v = torch.fft.rfft(u0, dim=-1)
    cache: dict[float, tuple] = {}
    for i, n in enumerate(_frame_steps(th, max_dt)):
        h = (th[i + 1] - th[i]) / n
        key = round(h, 15)
        if key not in cache:
            cache[key] = coefficients(h)
        e, e2, q, f1, f2x2, f3 = cache[key]
        for _ in range(n):  # the stages of solvers.etdrk4, fewer temporaries
            nv = nonlin(v)
            e2v = e2 * v
            a = torch.addcmul(e2v, q, nv)
            na = nonlin(a)
            b = torch.addcmul(e2v, q, na)
            nb = nonlin(b)
            c = torch.addcmul(e2 * a, q, 2 * nb - nv)
            nc = nonlin(c)
            v = (e * v).addcmul_(nv, f1).addcmul_(na + nb, f2x2).addcmul_(nc, f3)
        out[:, i + 1] = _irfft_real_nyquist(v, nx)
    return out


# --------------------------------------------------------------------------- master equation


def master_equation_matrix(potential: Tensor, diffusivity, beta: float, dx: float) -> Tensor:
    """Generator(s) M of the periodic nearest-neighbour master equation, float64 (..., nx, nx).

    Hop rate i -> j = (D/dx^2) exp(-beta (U_j - U_i) / 2) as solvers.master_equation_matrix;
    ``diffusivity`` a float or a tensor of shape (...) gives one generator per entry.
    Columns sum to zero.
    """
    pot = torch.as_tensor(potential, dtype=F64)
    nx = pot.shape[-1]
    d = torch.as_tensor(diffusivity, dtype=F64, device=pot.device)
    m = torch.zeros(d.shape + (nx, nx), dtype=F64, device=pot.device)
    idx = torch.arange(nx, device=pot.device)
    for step in (1, -1):
        j = (idx + step) % nx
        rate = d[..., None] / dx**2 * torch.exp(-beta * (pot[j] - pot[idx]) / 2)  # (..., nx)
        m[..., j, idx] += rate
        m[..., idx, idx] -= rate
    return m


def evolve_master(p0: Tensor, t, m: Tensor, stationary: Tensor, rate=None, index: Tensor | None = None) -> Tensor:
    """p(t) = exp(rate M t) p0 at every output time through the symmetric eigendecomposition.

    ``m``: one generator (nx, nx), or U generators (U, nx, nx) with ``index`` (B,) choosing
    row b's generator (default arange(B) when U == B); ``stationary``: the positive vector(s)
    pi, (nx,) or (U, nx), with detailed balance M_ji pi_i = M_ij pi_j; ``rate``: optional
    per-row factor (B, 1) of the generator. diag(pi)^-1/2 M diag(pi)^1/2 is symmetric, and
    scaling M by a rate scales its eigenvalues and keeps its eigenvectors, so the U
    decompositions (one batched ``torch.linalg.eigh``, float64) serve every row and frame:
    p(t) = A exp(rate L t) A^-1 p0. With U > 1 the per-row transforms are gathered, (B, nx,
    nx) of memory; prefer one generator and ``rate`` when the operators differ by a factor.
    For a float32 p0 the two transforms run as float32 matmuls, so on CUDA they follow
    ``torch.backends.cuda.matmul.allow_tf32`` (off by default; TF32 would cost ~1e-3).
    """
    p0 = _check_u0(p0)
    bsz, nx = p0.shape
    _, tt = _times(t, p0.device)
    mm = torch.as_tensor(m).to(p0.device, F64)
    pi = torch.as_tensor(stationary).to(p0.device, F64)
    r = torch.sqrt(pi)
    sym = mm * (1.0 / r)[..., :, None] * r[..., None, :]
    sym = 0.5 * (sym + sym.transpose(-1, -2))
    lam, q = torch.linalg.eigh(sym)  # (..., nx), (..., nx, nx)
    a = r[..., :, None] * q  # A = diag(sqrt pi) Q
    a_inv = q.transpose(-1, -2) / r[..., None, :]  # A^-1 = Q^T diag(1/sqrt pi)
    a, a_inv = a.to(p0.dtype), a_inv.to(p0.dtype)
    if mm.ndim == 2:
        coef = p0 @ a_inv.T  # (B, nx)
        lam_rows = lam[None]
    else:
        if index is None:
            if mm.shape[0] != bsz:
                raise ValueError(f"{mm.shape[0]} generators for {bsz} rows need an index (B,)")
            index = torch.arange(bsz, device=p0.device)
        index = torch.as_tensor(index, device=p0.device)
        a, a_inv, lam_rows = a[index], a_inv[index], lam[index]
        coef = (a_inv @ p0[:, :, None])[..., 0]
    if rate is not None:
        lam_rows = _param(rate, p0, "rate") * lam_rows
    # lam <= 0 up to round-off
    decay = torch.exp(torch.clamp(lam_rows, max=0.0)[:, None, :] * tt[None, :, None]).to(p0.dtype)  # (B|1, nt, nx)
    z = coef[:, None, :] * decay
    return z @ (a.T if a.ndim == 2 else a.transpose(-1, -2))


def fplanck_diffusivity(eta) -> Tensor:
    """D(eta) of families.fplanck_coefficients, elementwise on a float64 tensor (same operations)."""
    eta = torch.as_tensor(eta, dtype=F64)
    drag = 6 * math.pi * eta * FP_RADIUS
    return torch.full_like(drag, K_B * FP_TEMPERATURE) / drag * 1e12


# --------------------------------------------------------------------------- families


def heat(u0: Tensor, t, nu) -> Tensor:
    """heat: u_t = nu u_xx, exact exp(-nu k^2 t); nu (B, 1)."""
    u0 = _check_u0(u0)
    k = wavenumbers(u0.shape[-1], F64, u0.device)
    return _first_frame(evolve_linear(u0, -_param(nu, u0, "nu") * k**2, t), u0)


def advection(u0: Tensor, t, beta) -> Tensor:
    """advection: u_t + beta u_x = 0, exact shift exp(-i beta k t); beta (B, 1)."""
    u0 = _check_u0(u0)
    k = wavenumbers(u0.shape[-1], F64, u0.device)
    return _first_frame(evolve_linear(u0, -1j * _param(beta, u0, "beta") * k, t), u0)


def wave(u0: Tensor, t, beta) -> Tensor:
    """wave: u_tt = beta^2 u_xx, u_t(0) = 0, exact cos(beta k t); beta (B, 1)."""
    u0 = _check_u0(u0)
    k = wavenumbers(u0.shape[-1], F64, u0.device)
    return _first_frame(evolve_second_order(u0, _param(beta, u0, "beta") * k, t), u0)


def klein_gordon(u0: Tensor, t, c, m) -> Tensor:
    """Klein_Gordon: u_tt = c^2 u_xx - m^2 c^4 u, u_t(0) = 0, omega^2 = c^2 k^2 + m^2 c^4; c, m (B, 1)."""
    u0 = _check_u0(u0)
    k = wavenumbers(u0.shape[-1], F64, u0.device)
    c, m = _param(c, u0, "c"), _param(m, u0, "m")
    return _first_frame(evolve_second_order(u0, torch.sqrt(c**2 * k**2 + m**2 * c**4), t), u0)


def sine_gordon(u0: Tensor, t, c, substeps_per_unit: float = 512.0) -> Tensor:
    """Sine_Gordon: u_tt = u_xx - c sin(u), u_t(0) = 0, Stormer-Verlet; c (B, 1)."""
    u0 = _check_u0(u0)
    cc = _param(c, u0, "c").to(u0.dtype)
    return leapfrog_wave(u0, t, 1.0, lambda u: -cc * torch.sin(u), substeps_per_unit)


def kdv(u0: Tensor, t, delta, max_dt: float = 1.0 / 256) -> Tensor:
    """kdv: u_t + u u_x + delta^2 u_xxx = 0, ETDRK4 with 2/3 dealiasing; delta (B, 1).

    ``max_dt``: the family's t_final / 256 (its horizon is 1; ``KdV._solve_torch`` passes it).
    """
    u0 = _check_u0(u0)
    nx = u0.shape[-1]
    k = wavenumbers(nx, F64, u0.device)
    d2 = _param(delta, u0, "delta") ** 2
    lin = 1j * d2 * k**3  # (B|1, nk)
    keep = (torch.arange(k.numel(), device=u0.device) < (nx // 3)).to(F64)  # 2/3 rule
    half_ik = (-0.5j * k * keep).to(_complex_of(u0.dtype))

    def nonlin(v):
        u = _irfft_real_nyquist(v, nx)
        return torch.fft.rfft(u.square_(), dim=-1).mul_(half_ik)

    return etdrk4(u0, t, lin, nonlin, max_dt=max_dt)


def fplanck_operator(nx: int, device=None) -> tuple[Tensor, Tensor]:
    """(M, pi): the fplanck generator for D = 1 (float64, (nx, nx)) and its Boltzmann vector (nx,).

    The generator of FokkerPlanck._solve is D(eta) times this one.
    """
    dx = L_DOMAIN / nx
    x = (torch.arange(nx, dtype=F64, device=device) + 0.5) * dx  # ics.grid
    beta = 1.0 / (K_B * FP_TEMPERATURE)
    potential = FP_AMPLITUDE * torch.cos(x / FP_LENGTH_UM)
    m = master_equation_matrix(potential, 1.0, beta, dx)
    boltzmann = torch.exp(-beta * (potential - potential.min()))
    return m, boltzmann / boltzmann.sum()


def fplanck(u0: Tensor, t, eta) -> Tensor:
    """fplanck: the master equation of FokkerPlanck._solve with D = D(eta); eta (B, 1).

    The generator depends on eta only through the factor D, so one eigendecomposition (of the
    D = 1 generator) serves every row: the eigenvalues scale with D, the eigenvectors do not.
    (Grouping rows by torch.unique(D) and decomposing each distinct operator, which
    ``evolve_master(..., index=...)`` also supports, gives the same result to round-off.)
    """
    u0 = _check_u0(u0)
    m, pi = fplanck_operator(u0.shape[-1], u0.device)
    d = fplanck_diffusivity(_param(eta, u0, "eta"))
    return _first_frame(evolve_master(u0, t, m, pi, rate=d), u0)
