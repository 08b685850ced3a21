"""The reaction-diffusion torch solver's two diffusion paths and its float32 sub-step.

* The real-space path (``set_compile``: the exact propagator of the 3-point Laplacian as a
  truncated stencil, fused with the reaction) applies the same operator as the Fourier path:
  float64 solutions agree to 1e-12 (measured 8e-14 after 315 sub-steps).
* float32 takes ``t_final / RD_DIVISIONS[float32]`` sub-steps, fewer than numpy's; the test
  shows it is no less accurate than float32 at numpy's sub-step, against a float64 solution
  on a 16x finer sub-step (float32 rounding, not the splitting, bounds the accuracy there),
  and that its one RK4 step per reaction step (``RD_RK4_SUBSTEPS``) is as accurate as numpy's two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lemon_pl.data import solvers
from lemon_pl.data import torch_solvers as ts
from lemon_pl.data.families import get_family

RD = ["diff_logisreact_1D", "diff_bistablereact_1D", "diff_squarelogisticreact_1D"]
F64, F32 = torch.float64, torch.float32


def _case(name, n=6, seed=3):
    fam = get_family(name)
    rng = np.random.default_rng(seed)
    p = fam.sample_params(rng, gamma=0.5)
    return fam, p, fam.sample_initial_conditions(rng, n)


def _torch_params(fam, p, dtype):
    return {k: torch.tensor([[v]], dtype=dtype) for k, v in fam._get(p).items()}


def _numpy_reaction(fam, q):
    """numpy's reaction step of the family at its parameters ``q``: the exact logistic flow or 2 RK4 steps."""
    kin = type(fam).kinetics
    if kin == "logistic":
        return lambda u, h: u * np.exp(q["rho"] * h) / (1 + u * (np.exp(q["rho"] * h) - 1))
    g = {"bistable": lambda u: q["rho"] * u * (1 - u) * (u - q["a"]),
         "square": lambda u: q["rho"] * u * u * (1 - u) ** 2}[kin]
    return solvers.rk4_reaction(g)


def _solve(fam, p, u0, t, dtype, max_dt):
    q = _torch_params(fam, p, dtype)
    return ts.reaction_diffusion(torch.as_tensor(u0, dtype=dtype), torch.as_tensor(t), q["nu"], q["rho"],
                                 type(fam).kinetics, a=q.get("a"), max_dt=max_dt)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-15), (F32, 2e-7)])
def test_the_stencil_is_the_fourier_propagator(dtype, tol):
    n, b = 128, 5
    g = torch.Generator().manual_seed(0)
    u = torch.rand(b, n, generator=g, dtype=F64)
    nu = torch.linspace(1e-3, 6e-3, b, dtype=F64)[:, None]
    lap = ts.fd_laplacian_symbol(n)[None, :]
    for d in (0.004, 0.016):
        w = ts._propagator_stencil(nu, lap, d, n, dtype, n // 8)
        assert w is not None and w.shape[0] == b and w.shape[1] % 2 == 1 and w.shape[1] < 2 * (n // 8) + 1
        fourier = torch.fft.irfft(torch.fft.rfft(u, dim=-1) * torch.exp(d * nu * lap), n=n, dim=-1)
        real = ts._stencil(u.to(dtype), w).double()
        assert (real - fourier).abs().max() < tol
    # mass is kept (the taps sum to one: the k = 0 symbol is 0) and the kernel is non-negative
    torch.testing.assert_close(w.double().sum(1), torch.ones(b, dtype=F64), rtol=0, atol=10 * tol)
    assert (w >= -tol).all()
    # a propagator wider than the limit is refused (the solver keeps the Fourier path then)
    assert ts._propagator_stencil(nu, lap, 5.0, n, dtype, n // 8) is None


@pytest.mark.parametrize("name", RD)
def test_the_real_space_path_equals_the_fourier_path(name, monkeypatch):
    fam, p, u0 = _case(name)
    t = fam.t_grid(9)
    fourier = _solve(fam, p, u0, t, F64, fam.t_final / 256)
    # the real-space path, run eagerly (compile only fuses it; test_torch_solvers.py runs it compiled)
    monkeypatch.setitem(ts._COMPILE, "enabled", True)
    monkeypatch.setattr(ts, "_compiled", lambda fn: fn)
    real = _solve(fam, p, u0, t, F64, fam.t_final / 256)
    assert (real - fourier).abs().max() < 1e-12


@pytest.mark.parametrize("name", RD)
def test_float32_sub_step_is_no_less_accurate_than_numpys(name):
    fam, p, u0 = _case(name, n=8)
    t = fam.t_grid(64)
    q = fam._get(p)
    fine = solvers.reaction_diffusion(u0, t, q["nu"], _numpy_reaction(fam, q), max_dt=fam.t_final / 4096)
    default = fam.solve_torch(p, u0, nt=64, dtype=F32).double().numpy()
    at_numpys = _solve(fam, p, u0, t, F32, fam.t_final / 256).double().numpy()
    err, err_numpys = np.abs(default - fine).max(), np.abs(at_numpys - fine).max()
    assert ts.RD_DIVISIONS[F32] < 256 and err <= err_numpys, (err, err_numpys)
    assert err < 2e-5
    # float64 keeps numpy's sub-step, and numpy's accuracy
    assert ts.RD_DIVISIONS[F64] == 256


@pytest.mark.parametrize("name", RD[1:])
def test_float32_one_rk4_step_is_as_accurate_as_two(name):
    fam, p, u0 = _case(name, n=16, seed=5)
    t = fam.t_grid(64)
    q = fam._get(p)
    fine = solvers.reaction_diffusion(u0, t, q["nu"], _numpy_reaction(fam, q), max_dt=fam.t_final / 4096)
    tp = _torch_params(fam, p, F32)

    def err(substeps):
        out = ts.reaction_diffusion(torch.as_tensor(u0, dtype=F32), torch.as_tensor(t), tp["nu"], tp["rho"],
                                    type(fam).kinetics, a=tp.get("a"), max_dt=fam.t_final / ts.RD_DIVISIONS[F32],
                                    substeps=substeps)
        return np.abs(out.double().numpy() - fine).max()

    one, two = err(1), err(2)
    assert ts.RD_RK4_SUBSTEPS == {F64: 2, F32: 1}
    assert one < 1.25 * two and one < 1e-5, (one, two)
    # the family's float32 solve is the one-step solution
    default = fam.solve_torch(p, u0, nt=64, dtype=F32).double().numpy()
    assert np.abs(default - fine).max() == one
