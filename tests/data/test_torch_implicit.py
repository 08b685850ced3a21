"""Batched adaptive Rosenbrock integrator in torch (lemon_pl.data.torch_implicit).

The Cahn-Hilliard twin must reproduce the numpy path (scipy BDF on the same semi-discrete
system) to solver tolerance, conserve mass to round-off, and treat every row independently:
per-row parameters, per-row step sizes, and failed rows that become NaN without touching the
others. Tolerances are measured values with the margin noted next to each check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from lemon_pl.data import solvers
from lemon_pl.data.families import get_family
from lemon_pl.data.ics import grid
from lemon_pl.data.torch_implicit import (
    TABLEAUS, cahn_hilliard, dense_lu, periodic_penta_factor, rosenbrock,
)

F64 = torch.float64

# the implicit Cahn-Hilliard solver's checks take ~20 s on 2 cores: CI's slow step runs them
pytestmark = pytest.mark.slow


def _drift(q: np.ndarray) -> float:
    """Largest relative change of a per-frame quantity (..., nt) from its first frame."""
    return float(np.max(np.abs(q - q[..., :1]) / np.abs(q[..., :1])))


@pytest.fixture(scope="module")
def family_case():
    """Four sampled ICs at the family's settings (nx = 128, nt = 64, t_final = 0.5)."""
    fam = get_family("cahnhilliard_1D")
    rng = np.random.default_rng(11)
    u0 = fam.sample_initial_conditions(rng, 4, 128)
    eps = fam.sample_params(rng)["eps"]
    t = fam.t_grid(64)
    u, stats = cahn_hilliard(torch.tensor(u0), torch.tensor(t), torch.full((4, 1), eps**2, dtype=F64),
                             return_stats=True)
    return u0, t, eps, u.numpy(), stats


def test_matches_numpy_solver_for_sampled_ics(family_case):
    u0, t, eps, u, stats = family_case
    assert np.isfinite(u).all() and u.shape == (4, t.size, 128)
    np.testing.assert_array_equal(u[:, 0], u0)
    ref = solvers.cahn_hilliard(u0, t, eps**2)  # the numpy path, rtol 1e-6 / atol 1e-8
    tight = solvers.cahn_hilliard(u0, t, eps**2, rtol=1e-10, atol=1e-12)
    # |u| <= ~1, so absolute errors are relative ones. Measured: 3.0e-7 against the numpy path
    # (which is itself 3.0e-7 from the tight solution) and 6.7e-8 against the tight solution.
    assert np.abs(u - ref).max() < 3e-6
    assert np.abs(u - tight).max() < 5e-7
    # Rodas4 takes 123-220 steps per row here (63 of them end on an output time), 2 rejected
    assert int(stats["accepted"].max()) < 300 and int(stats["rejected"].max()) < 20


def test_mass_conserved_to_round_off(family_case):
    u = family_case[3]
    assert _drift(u.sum(axis=-1)) < 1e-12  # measured ~5e-15


def test_linear_decay_rate_of_a_single_mode():
    """v_t = 6 u_bar v_xx - eps^2 v_xxxx around u_bar: FD rate -(6 u_bar K + eps^2 K^2),
    K = (4/dx^2) sin^2(k dx/2) (the same check as the numpy solver's test)."""
    nx, eps = 64, 0.0098
    x, dx = grid(nx), 2.0 / nx
    cases = [(0.01, 8, 1e-3), (0.02, 8, 2e-3), (0.005, 10, 2e-4), (0.01, 6, 5e-4), (0.05, 3, 2e-3)]
    u0 = np.stack([ub + a * np.cos(np.pi * n * x + 0.3) for ub, n, a in cases])
    t = get_family("cahnhilliard_1D").t_grid(64)
    u = cahn_hilliard(torch.tensor(u0), torch.tensor(t), eps**2).numpy()
    assert _drift(u.sum(axis=-1)) < 1e-12
    for i, (ubar, n, _amp) in enumerate(cases):
        big_k = (4 / dx**2) * np.sin(np.pi * n * dx / 2) ** 2
        lam = -(6 * ubar * big_k + eps**2 * big_k**2)
        coef = np.fft.rfft(u[i], axis=-1)[:, n]
        ratio = np.abs(coef / coef[0])
        exact = np.exp(lam * t)
        sel = exact > 1e-2
        assert sel.sum() >= 6
        np.testing.assert_allclose(ratio[sel], exact[sel], rtol=5e-3, atol=0)
        fitted = np.polyfit(t[sel], np.log(ratio[sel]), 1)[0]
        assert fitted == pytest.approx(lam, rel=2e-3)


def test_per_row_parameters_equal_solving_rows_alone(family_case):
    u0 = torch.tensor(family_case[0][:2])
    t = torch.tensor(family_case[1])
    eps2 = torch.tensor([[1.0e-4], [0.6e-4]], dtype=F64)
    both = cahn_hilliard(u0, t, eps2)
    alone = [cahn_hilliard(u0[i:i + 1], t, eps2[i:i + 1])[0] for i in range(2)]
    for i in range(2):
        # each row keeps its own step sequence: identical up to round-off (bitwise on CPU)
        torch.testing.assert_close(both[i], alone[i], rtol=0, atol=1e-13)
    # the parameter matters: row 1 with row 0's eps2 is a different trajectory
    assert (cahn_hilliard(u0[1:], t, eps2[:1]) - both[1:]).abs().max() > 1e-3


def test_failed_rows_become_nan_without_affecting_others(family_case):
    u0 = torch.tensor(family_case[0][:3])
    t = torch.tensor(family_case[1][:9])  # first 8 frames keep it short
    eps2 = torch.full((5, 1), 1e-4, dtype=F64)
    bad = u0.clone()
    bad[1, 17] = float("nan")
    bad[2] = float("inf")
    batch = torch.cat([u0[:1], bad[1:3], u0[1:]])  # rows: good, NaN, inf, good, good
    out, stats = cahn_hilliard(batch, t, eps2, return_stats=True)
    assert torch.isnan(out[1:3]).all()
    assert torch.isfinite(out[[0, 3, 4]]).all()
    good = cahn_hilliard(torch.stack([u0[0], u0[1], u0[2]]), t, eps2[:3])
    torch.testing.assert_close(out[[0, 3, 4]], good, rtol=0, atol=1e-13)
    assert int(stats["accepted"][1]) == 0 and int(stats["rejected"][1]) < 20  # fails fast


def test_step_limit_fails_rows_instead_of_hanging(family_case):
    u0 = torch.tensor(family_case[0][:2])
    out = cahn_hilliard(u0, torch.tensor(family_case[1]), 1e-4, max_steps=5)
    assert torch.isnan(out).all()


def test_uneven_output_times_are_hit_exactly(family_case):
    u0, _, eps = family_case[0][:2], family_case[1], family_case[2]
    t = np.array([0.0, 1e-4, 3e-3, 0.0031, 0.05, 0.2])
    u = cahn_hilliard(torch.tensor(u0), torch.tensor(t), eps**2).numpy()
    tight = solvers.cahn_hilliard(u0, t, eps**2, rtol=1e-10, atol=1e-12)
    assert np.abs(u - tight).max() < 1e-6  # measured 2.3e-7


@pytest.mark.parametrize("n", [2, 4, 16, 128])
def test_periodic_pentadiagonal_cyclic_reduction_matches_dense(n):
    gen = torch.Generator().manual_seed(n)
    diags = {k: torch.randn(3, n, generator=gen, dtype=F64) * 0.3 for k in (-2, -1, 0, 1, 2)}
    diags[0] = diags[0] + 2.0
    m = torch.zeros(3, n, n, dtype=F64)
    i = torch.arange(n)
    for k, d in diags.items():
        m[:, i, (i + k) % n] += d  # small n: wrapped bands add up, as in the periodic stencil
    r = torch.randn(3, n, generator=gen, dtype=F64)
    x = periodic_penta_factor(*(diags[k] for k in (-2, -1, 0, 1, 2)))(r)
    torch.testing.assert_close(x, torch.linalg.solve(m, r), rtol=0, atol=1e-13)
    with pytest.raises(ValueError):
        periodic_penta_factor(*(torch.ones(1, 6, dtype=F64) for _ in range(5)))


def test_cyclic_linear_solver_matches_dense(family_case):
    u0, t, eps, u, stats = family_case
    uc, stc = cahn_hilliard(torch.tensor(u0), torch.tensor(t), torch.full((4, 1), eps**2, dtype=F64),
                            linear_solver="cyclic", return_stats=True)
    # same step sequence, solves equal to round-off (measured ~1e-14)
    assert torch.equal(stc["accepted"], stats["accepted"])
    assert np.abs(uc.numpy() - u).max() < 1e-10
    assert _drift(uc.numpy().sum(axis=-1)) < 1e-12


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_every_tableau_on_a_stiff_ode(method):
    """Robertson's stiff kinetics (per-row rate constant), against Radau at rtol 1e-11."""

    def rhs(y, p):
        k3 = p[:, :1]
        a, b, c = y[:, :1], y[:, 1:2], y[:, 2:]
        da = -0.04 * a + 1e4 * b * c
        dc = k3 * b * b
        return torch.cat([da, -da - dc, dc], dim=1)

    def iteration_matrix(y, p, hg):
        k3 = p[:, 0]
        b, c = y[:, 1], y[:, 2]
        z = torch.zeros_like(b)
        jac = torch.stack([
            torch.stack([z - 0.04, 1e4 * c, 1e4 * b], -1),
            torch.stack([z + 0.04, -1e4 * c - 2 * k3 * b, -1e4 * b], -1),
            torch.stack([z, 2 * k3 * b, z], -1),
        ], -2)
        return torch.eye(3, dtype=y.dtype) - hg[:, None, None] * jac

    k3 = np.array([3e7, 1e7])
    t = np.array([0.0, 0.4, 4.0, 40.0])
    y0 = torch.tensor([[1.0, 0.0, 0.0]] * 2, dtype=F64)
    out, stats = rosenbrock(rhs, dense_lu(iteration_matrix), y0, torch.tensor(t), torch.tensor(k3[:, None]),
                            rtol=1e-6, atol=1e-10, method=method, return_stats=True)
    out = out.numpy()
    for i in range(2):
        f = lambda _t, y, k=k3[i]: [-0.04 * y[0] + 1e4 * y[1] * y[2],
                                    0.04 * y[0] - 1e4 * y[1] * y[2] - k * y[1] ** 2, k * y[1] ** 2]
        ref = solve_ivp(f, (0, t[-1]), [1.0, 0.0, 0.0], method="Radau", t_eval=t,
                        rtol=1e-11, atol=1e-14).y.T
        np.testing.assert_allclose(out[i], ref, rtol=1e-5, atol=1e-10)  # measured <= 0.2 of this
        assert abs(out[i].sum(-1) - 1).max() < 1e-13  # linear invariant a + b + c
    assert int(stats["accepted"].max()) < 2000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("linear_solver", ["dense", "cyclic"])
def test_cuda_matches_cpu(family_case, linear_solver):
    u0, t, eps, u_cpu, stats = family_case
    eps2 = torch.full((4, 1), eps**2, dtype=F64)
    u_gpu, st = cahn_hilliard(torch.tensor(u0, device="cuda"), torch.tensor(t), eps2.cuda(),
                              linear_solver=linear_solver, return_stats=True)
    assert u_gpu.device.type == "cuda" and u_gpu.dtype == F64
    u_gpu = u_gpu.cpu().numpy()
    # the same step sequence up to round-off in the solves: agreement far inside the tolerance
    assert np.abs(st["accepted"].cpu().numpy() - stats["accepted"].numpy()).max() <= 2
    assert np.abs(u_gpu - u_cpu).max() < 1e-7
    assert _drift(u_gpu.sum(axis=-1)) < 1e-12
