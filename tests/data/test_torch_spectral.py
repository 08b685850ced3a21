"""Torch spectral solvers (lemon_pl.data.torch_spectral) against the numpy families, and physics checks.

Every family function is compared with ``get_family(name).solve`` on a batch that mixes two
parameter rows (per-row parameters, ICs from the family's sampler plus small noise so that
every Fourier mode, the Nyquist mode included, is populated). The torch solvers take the same
steps as the numpy ones, so the differences are FFT round-off; the tolerances below leave
large margins over the measured values noted next to them (CPU, float64).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from lemon_pl.data import solvers
from lemon_pl.data import torch_spectral as ts
from lemon_pl.data.families import FP_AMPLITUDE, FP_LENGTH_UM, FP_TEMPERATURE, K_B, fplanck_coefficients, get_family
from lemon_pl.data.ics import grid

F64, F32 = torch.float64, torch.float32
NX, NT, N_PER_ROW = 128, 64, 3

FUNCS = {
    "heat": ts.heat, "advection": ts.advection, "wave": ts.wave, "Klein_Gordon": ts.klein_gordon,
    "Sine_Gordon": ts.sine_gordon, "kdv": ts.kdv, "fplanck": ts.fplanck,
}
# max |torch - numpy| / max |numpy| allowed; measured (CPU, float64) in the comments
NUMPY_TOL = {
    "heat": 1e-10,  # 4e-16
    "advection": 1e-10,  # 7e-16
    "wave": 1e-10,  # 6e-16
    "Klein_Gordon": 1e-10,  # 4e-16
    "fplanck": 1e-10,  # 3e-13 (one eigendecomposition scaled by D vs one per D)
    "Sine_Gordon": 1e-8,  # 3e-15 (819 leapfrog steps)
    "kdv": 1e-8,  # 2e-15 (252 ETDRK4 steps)
}
# float32 (u0 and parameters) vs float64, same relative measure; measured in the comments
F32_TOL = {
    "heat": 1e-5,  # 2e-7
    "advection": 1e-5,  # 3e-7
    "wave": 1e-5,  # 3e-7
    "Klein_Gordon": 1e-5,  # 3e-7
    "fplanck": 1e-5,  # 3e-7
    "Sine_Gordon": 2e-5,  # 1.2e-6 (819 steps)
    "kdv": 5e-5,  # 1.8e-6 (stiff dispersion, 252 steps)
}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@functools.lru_cache(maxsize=None)
def _case(name: str):
    """(u0 (2n, nx), t, per-row params {name: (2n, 1) float64}, numpy reference (2n, nt, nx))."""
    fam = get_family(name)
    rng = np.random.default_rng(sorted(FUNCS).index(name))
    p1 = fam.sample_params(rng, gamma=0.3)
    p2 = fam.sample_params(rng, gamma=0.3)
    while p2 == p1:
        p2 = fam.sample_params(rng, gamma=0.3)
    u0 = fam.sample_initial_conditions(rng, 2 * N_PER_ROW, NX)
    noise = 1e-5 if name == "fplanck" else 1e-3  # fplanck ICs are densities of size ~1/nx
    u0 = u0 + noise * rng.standard_normal(u0.shape)
    n = N_PER_ROW
    ref = np.concatenate([fam.solve(p1, u0[:n], NT), fam.solve(p2, u0[n:], NT)])
    params = {k: torch.tensor([p1[k]] * n + [p2[k]] * n, dtype=F64)[:, None] for k in fam.param_names}
    return u0, fam.t_grid(NT), params, ref


def _solve(name, u0, t, params, device="cpu", dtype=F64, param_dtype=None):
    p = {k: v.to(device, param_dtype or dtype) for k, v in params.items()}
    return FUNCS[name](torch.as_tensor(u0, dtype=dtype, device=device), torch.as_tensor(t), **p)


def test_wavenumbers_match_numpy():
    for nx in (64, 128, 129):
        assert np.array_equal(ts.wavenumbers(nx).numpy(), solvers.wavenumbers(nx))


@pytest.mark.parametrize("name", list(FUNCS))
def test_matches_numpy_family_with_per_row_params(name):
    u0, t, params, ref = _case(name)
    out = _solve(name, u0, t, params)
    assert out.shape == (2 * N_PER_ROW, NT, NX) and out.dtype == F64 and out.device.type == "cpu"
    assert torch.equal(out[:, 0], torch.as_tensor(u0))  # frame 0 is the IC, as Family.solve
    assert rel_err(out, ref) < NUMPY_TOL[name]


@pytest.mark.parametrize("name", list(FUNCS))
def test_mixed_batch_equals_rows_alone(name):
    u0, t, params, _ = _case(name)
    batch = _solve(name, u0, t, params)
    alone = torch.cat([_solve(name, u0[i:i + 1], t, {k: v[i:i + 1] for k, v in params.items()})
                       for i in range(u0.shape[0])])
    assert rel_err(batch, alone) < 1e-12  # measured <= 5e-16


@pytest.mark.parametrize("name", list(FUNCS))
def test_float32_close_to_float64(name):
    u0, t, params, _ = _case(name)
    out64 = _solve(name, u0, t, params)
    out32 = _solve(name, u0, t, params, dtype=F32)
    assert out32.dtype == F32 and out32.shape == out64.shape
    assert rel_err(out32, out64) < F32_TOL[name]
    # float64 parameters with a float32 state: the coefficients keep the exact decimal values
    assert rel_err(_solve(name, u0, t, params, dtype=F32, param_dtype=F64), out64) < F32_TOL[name]


def test_scalar_and_flat_params_broadcast():
    u0, t, params, _ = _case("Klein_Gordon")
    full = _solve("Klein_Gordon", u0[:2], t, {k: v[:2] for k, v in params.items()})
    c, m = float(params["c"][0]), float(params["m"][0])
    u = torch.as_tensor(u0[:2])
    assert torch.equal(ts.klein_gordon(u, torch.as_tensor(t), c=c, m=m), full)
    assert torch.equal(ts.klein_gordon(u, torch.as_tensor(t), c=torch.tensor([c, c], dtype=F64),
                                       m=torch.tensor(m, dtype=F64)), full)
    with pytest.raises(ValueError, match="shape"):
        ts.heat(u, torch.as_tensor(t), nu=torch.ones(3, 1, dtype=F64))
    with pytest.raises(ValueError, match="u0"):
        ts.heat(u[0], torch.as_tensor(t), nu=0.01)
    with pytest.raises(ValueError, match="start at 0"):
        ts.kdv(u, torch.as_tensor(t) + 0.1, delta=0.02)


# --------------------------------------------------------------------------- physics


def test_heat_single_mode_decays_at_the_exact_rate():
    x = torch.as_tensor(grid(NX))
    modes = torch.tensor([1.0, 3.0, 7.0], dtype=F64)[:, None]
    nu = torch.tensor([3e-3, 1e-2, 5e-2], dtype=F64)[:, None]
    u0 = torch.sin(math.pi * modes * x)  # wavenumber pi m on [0, 2)
    t = torch.as_tensor(get_family("heat").t_grid(NT))
    out = ts.heat(u0, t, nu=nu)
    exact = torch.exp(-nu[:, :, None] * (math.pi * modes[:, :, None]) ** 2 * t[None, :, None]) * u0[:, None, :]
    assert (out - exact).abs().max() < 1e-13  # measured 1.3e-15
    assert float(exact[-1, -1].abs().max()) < 0.01  # the fastest row has really decayed


def test_advection_is_an_exact_shift():
    t = torch.as_tensor(get_family("advection").t_grid(NT))  # t_k = k / 32
    rng = np.random.default_rng(1)
    u0 = torch.as_tensor(rng.standard_normal((2, NX)))  # every mode, Nyquist included
    # beta = 0.5: frame k is shifted by exactly k cells (dx = 1/64)
    out = ts.advection(u0, t, beta=torch.full((2, 1), 0.5, dtype=F64))
    shifted = torch.stack([torch.roll(u0, k, dims=-1) for k in range(NT)], dim=1)
    assert (out - shifted).abs().max() < 1e-12  # measured 3e-14
    # a smooth profile at a non-commensurate speed: u0(x - beta t)
    x = torch.as_tensor(grid(NX))
    beta = torch.tensor([0.503, -0.71], dtype=F64)[:, None]

    def prof(z):
        return torch.sin(math.pi * z) + 0.3 * torch.cos(3 * math.pi * z)

    out = ts.advection(prof(x)[None].expand(2, NX), t, beta=beta)
    exact = prof(x[None, None, :] - beta[:, :, None] * t[None, :, None])
    assert (out - exact).abs().max() < 1e-12  # measured 2.4e-15


def test_kdv_soliton_travels_at_its_speed_and_conserves_mass():
    fam = get_family("kdv")
    delta, c, x0 = 0.022, 0.25, 0.6
    x = torch.as_tensor(grid(NX))
    t = torch.as_tensor(fam.t_grid(NT))

    def soliton(z):  # u_t + u u_x + delta^2 u_xxx = 0: 3c sech^2(sqrt(c) z / (2 delta)), z = x - x0 - ct
        z = torch.remainder(z + 1.0, 2.0) - 1.0  # nearest periodic image
        return 3 * c / torch.cosh(math.sqrt(c) * z / (2 * delta)) ** 2

    u0 = soliton(x - x0)[None]
    out = ts.kdv(u0, t, delta=torch.tensor([[delta]], dtype=F64))
    exact = soliton(x[None, :] - x0 - c * t[:, None])[None]
    mass = out.sum(-1)
    assert float((mass - mass[:, :1]).abs().max() / mass[0, 0]) < 1e-12  # measured 2e-16
    assert float((out - exact).abs().max()) < 1e-5  # measured 4e-7 (amplitude 0.75)
    # and it is the numpy solver's trajectory
    ref = fam.solve({"delta": delta}, u0.numpy())
    assert rel_err(out, ref) < 1e-8


def test_fplanck_conserves_probability_and_relaxes_to_boltzmann():
    u0, _, params, _ = _case("fplanck")
    p0 = torch.as_tensor(u0)
    t = torch.tensor([0.0, 0.05, 0.1, 0.5, 5.0], dtype=F64)
    out = ts.fplanck(p0, t, eta=params["eta"])
    mass = out.sum(-1)
    assert float((mass - mass[:, :1]).abs().max()) < 1e-11  # measured 8e-13 (numpy solver: 4e-13), unit mass
    _, pi = ts.fplanck_operator(NX)
    assert float((out[:, -1] - mass[:, :1] * pi).abs().max() / pi.max()) < 1e-10  # measured 2e-12


def test_fplanck_diffusivity_and_grouped_operators():
    eta = torch.tensor([8.3e-4, 1.07e-3, 8.3e-4, 1.2e-3], dtype=F64)[:, None]
    d = ts.fplanck_diffusivity(eta)
    expect = torch.tensor([fplanck_coefficients(float(e))[2] for e in eta[:, 0]], dtype=F64)[:, None]
    assert torch.equal(d, expect)
    # one operator per distinct D, decomposed once each (batched eigh) == the scaled single operator
    rng = np.random.default_rng(5)
    p0 = torch.as_tensor(get_family("fplanck").sample_initial_conditions(rng, 4, NX))
    t = torch.as_tensor(get_family("fplanck").t_grid(NT))
    m1, pi = ts.fplanck_operator(NX)
    d_u, inverse = torch.unique(d[:, 0], return_inverse=True)
    assert d_u.numel() == 3
    potential = FP_AMPLITUDE * torch.cos(torch.as_tensor(grid(NX)) / FP_LENGTH_UM)
    ops = ts.master_equation_matrix(potential, d_u, 1.0 / (K_B * FP_TEMPERATURE), 2.0 / NX)
    assert ops.shape == (3, NX, NX) and torch.allclose(ops[0], d_u[0] * m1, rtol=1e-14, atol=0)
    grouped = ts.evolve_master(p0, t, ops, pi, index=inverse)
    grouped[:, 0] = p0
    assert rel_err(grouped, ts.fplanck(p0, t, eta=eta)) < 1e-11  # measured 3e-13


# --------------------------------------------------------------------------- generic solvers


def test_leapfrog_step_rule_comes_from_the_largest_speed():
    rng = np.random.default_rng(3)
    u0 = get_family("Sine_Gordon").sample_initial_conditions(rng, 2, NX)
    t = get_family("Sine_Gordon").t_grid(NT)
    speed2 = torch.tensor([[1.0], [0.36]], dtype=F64)
    out = ts.leapfrog_wave(torch.as_tensor(u0), torch.as_tensor(t), speed2, lambda u: -0.7 * torch.sin(u))
    fast = solvers.leapfrog_wave(u0[:1], t, 1.0, lambda u: -0.7 * np.sin(u))
    slow = solvers.leapfrog_wave(u0[1:], t, 0.36, lambda u: -0.7 * np.sin(u))  # larger numpy step
    assert rel_err(out[:1], fast) < 1e-12  # same steps: measured 3e-15
    assert rel_err(out[1:], slow) < 2e-5  # smaller torch step: discretisation error, measured 1.7e-6


def test_etdrk4_real_per_row_symbol_matches_numpy():
    """The real-coefficient branch (a viscous Burgers-type problem), two distinct rows of lin."""
    rng = np.random.default_rng(4)
    u0 = get_family("kdv").sample_initial_conditions(rng, 4, NX)
    t = np.arange(16) / 32
    k = solvers.wavenumbers(NX)
    nus = (0.01, 0.03)
    half_ik = -0.5j * k * (np.arange(k.size) < NX // 3)

    def nl_np(v):
        u = np.fft.irfft(v, n=NX, axis=-1)
        return half_ik * np.fft.rfft(u * u, axis=-1)

    ref = np.concatenate([solvers.etdrk4(u0[2 * i:2 * i + 2], t, -nu * k**2, nl_np, 1 / 100)
                          for i, nu in enumerate(nus)])
    hk = torch.as_tensor(half_ik)

    def nl(v):
        return hk * torch.fft.rfft(torch.fft.irfft(v, n=NX) ** 2)

    lin = -torch.tensor([[nus[0]]] * 2 + [[nus[1]]] * 2, dtype=F64) * ts.wavenumbers(NX) ** 2
    out = ts.etdrk4(torch.as_tensor(u0), torch.as_tensor(t), lin, nl, 1 / 100)
    assert rel_err(out, ref) < 1e-10  # measured 4e-16


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(FUNCS))
def test_cuda_matches_cpu(name):
    u0, t, params, ref = _case(name)
    cpu = _solve(name, u0, t, params)
    gpu = _solve(name, u0, t, params, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == F64 and gpu.shape == cpu.shape
    assert rel_err(gpu.cpu(), cpu) < NUMPY_TOL[name]
    assert rel_err(gpu.cpu(), ref) < NUMPY_TOL[name]
    gpu32 = _solve(name, u0, t, params, device="cuda", dtype=F32)
    assert gpu32.dtype == F32 and rel_err(gpu32.cpu(), cpu) < F32_TOL[name]
