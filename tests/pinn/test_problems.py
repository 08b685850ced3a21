"""PINN problems: parameter handling, exact references, splitting convergence, residuals of references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from lemon_pl.pinn.problems import (
    CDR_ICS,
    ConvectionDiffusionReaction,
    Helmholtz2D,
    strang_reaction_diffusion,
)

CDR = ConvectionDiffusionReaction


def cdr_points(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([2 * math.pi, 1.0], dtype=torch.float64)


def grid_coords(x, t):
    X, T = np.meshgrid(x, t)
    return torch.tensor(np.stack([X.ravel(), T.ravel()], axis=1))


# --------------------------------------------------------------------------- parameters and conventions


def test_cdr_parameters_grid_ics_and_presets():
    p = CDR("1+sin")
    assert p.param_names == ("beta", "nu", "rho") and p.domain.periodic == (True, False)
    assert p.boundary == "periodic" and p.time_dependent
    assert p.mu([3, 1, 2]) == {"beta": 3.0, "nu": 1.0, "rho": 2.0} == p.mu(torch.tensor([3.0, 1.0, 2.0]))
    assert p.mu() == p.defaults()
    with pytest.raises(ValueError, match="missing"):
        p.mu({"beta": 1.0})
    with pytest.raises(ValueError, match="expected 3"):
        p.mu([1.0, 2.0])
    with pytest.raises(ValueError, match="nu must be >= 0"):
        p.mu([1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="unknown IC"):
        CDR("sin")
    x, t = p.grid()
    assert x.size == 256 and x[0] == 0 and x[-1] < 2 * math.pi and t.size == 100 and t[-1] == 1.0
    # Gaussian ICs: centre pi, peak 1, sigma pi/2 and pi/4 (value at one sigma = exp(-1/2))
    for key, sigma in (("gauss_pi_2", math.pi / 2), ("gauss", math.pi / 4)):
        u0 = CDR_ICS[key]
        assert u0(np.array(math.pi)) == 1.0
        assert u0(np.array(math.pi + sigma)) == pytest.approx(math.exp(-0.5), rel=1e-14)
    np.testing.assert_allclose(p.initial_condition(x), 1 + np.sin(x))
    prob, mus = CDR.preset("table2_convection")
    assert prob.ic == "1+sin" and mus.shape == (11, 3) and mus[:, 0].tolist() == list(range(30, 41))
    assert np.all(mus[:, 1:] == 0)
    assert CDR.preset("table4_cdr")[1].shape == (125, 3)
    np.testing.assert_allclose(Helmholtz2D.params[0].values(), np.round(np.arange(2.0, 3.05, 0.1), 12))


# --------------------------------------------------------------------------- exact references


def test_convection_is_the_exact_periodic_shift():
    x, t = CDR.grid()
    for beta in (1.0, 30.0, 37.0):
        ref = CDR("1+sin").reference([beta, 0, 0])
        np.testing.assert_allclose(ref, 1 + np.sin(x[None, :] - beta * t[:, None]), atol=1e-13)
        gauss = CDR("gauss_pi_2").reference([beta, 0, 0])
        xi = np.mod(x[None, :] - beta * t[:, None], 2 * math.pi)
        np.testing.assert_allclose(gauss, np.exp(-((xi - math.pi) ** 2) / (2 * (math.pi / 2) ** 2)), atol=1e-14)


def test_convection_diffusion_is_the_exact_spectral_propagator():
    x, t = CDR.grid()
    for beta, nu in ((0.0, 1.0), (3.0, 2.0), (30.0, 5.0)):
        ref = CDR("1+sin").reference([beta, nu, 0])
        exact = 1 + np.exp(-nu * t[:, None]) * np.sin(x[None, :] - beta * t[:, None])
        np.testing.assert_allclose(ref, exact, atol=1e-13)
    # off the uniform grid and from t > 0: the trigonometric interpolant gives the same values
    xs = np.array([0.1, 1.0, 2.5, 6.2])
    ts = np.array([0.05, 0.5, 1.0])
    exact = 1 + np.exp(-2.0 * ts[:, None]) * np.sin(xs[None, :] - 3.0 * ts[:, None])
    np.testing.assert_allclose(CDR("1+sin").reference([3, 2, 0], xs, ts), exact, atol=1e-13)


def test_reaction_is_the_logistic_closed_form():
    x, t = CDR.grid()
    for ic in CDR_ICS:
        p = CDR(ic)
        for rho in (1.0, 5.0):
            u0 = p.initial_condition(x)[None, :]
            e = np.exp(rho * t[:, None])
            np.testing.assert_allclose(p.reference([0, 0, rho]), u0 * e / (u0 * e + 1 - u0), atol=1e-14)


def test_each_splitting_substep_is_exact():
    """With rho = 0 the splitting is the exact propagator; with nu = 0 the exact logistic."""
    n = 64
    x = 2 * math.pi * np.arange(n) / n
    t = np.linspace(0, 1, 11)
    u0 = CDR_ICS["gauss"](x)
    heat = np.fft.irfft(strang_reaction_diffusion(u0, t, 2.0, 0.0, 0.1), n=n)
    k2 = np.arange(n // 2 + 1) ** 2
    exact = np.fft.irfft(np.fft.rfft(u0)[None] * np.exp(-2.0 * k2[None] * t[:, None]), n=n)
    np.testing.assert_allclose(heat, exact, atol=1e-14)
    react = np.fft.irfft(strang_reaction_diffusion(u0, t, 0.0, 4.0, 0.1), n=n)
    e = np.exp(4.0 * t[:, None])
    np.testing.assert_allclose(react, u0 * e / (u0 * e + 1 - u0), atol=1e-13)


def test_cdr_splitting_matches_an_independent_method_of_lines_solver():
    """Lab-frame spectral semi-discretisation with DOP853 vs the co-moving Strang splitting."""
    n, (beta, nu, rho) = 64, (3.0, 1.0, 2.0)
    x = 2 * math.pi * np.arange(n) / n
    t = np.linspace(0, 1, 6)
    k = np.fft.rfftfreq(n, 1 / n)

    def rhs(_, u):
        uh = np.fft.rfft(u)
        u_x = np.fft.irfft(1j * k * uh * (k < n // 2), n=n)
        u_xx = np.fft.irfft(-(k**2) * uh, n=n)
        return -beta * u_x + nu * u_xx + rho * u * (1 - u)

    p = CDR("gauss")
    sol = solve_ivp(rhs, (0, 1), p.initial_condition(x), t_eval=t, method="DOP853", rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(p.reference([beta, nu, rho], x, t, max_dt=2.5e-4), sol.y.T, atol=2e-8)


@pytest.mark.parametrize("ic,mu", [("1+sin", (2.0, 1.0, 5.0)), ("gauss_pi_2", (3.0, 5.0, 5.0))])
def test_splitting_converges_at_second_order_on_the_stored_times(ic, mu):
    p = CDR(ic)
    x = 2 * math.pi * np.arange(64) / 64  # a small standard grid keeps this fast
    t = np.linspace(0.0, 1.0, 100)  # the stored times, spaced 1/99
    fine = p.reference(mu, x, t, max_dt=1 / 99 / 64)
    errors = [np.abs(p.reference(mu, x, t, max_dt=1 / 99 / 2**j) - fine).max() for j in range(4)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(np.abs(ratios - 4) < 0.1), (errors, ratios)
    assert np.abs(p.reference(mu, x, t) - fine).max() < 2e-6  # the default max_dt = 1e-3


# --------------------------------------------------------------------------- residuals of the references


@pytest.mark.parametrize("ic", sorted(CDR_ICS))
@pytest.mark.parametrize("mu", [(30.0, 0.0, 0.0), (0.0, 0.0, 5.0), (3.0, 0.0, 2.0), (4.0, 2.0, 0.0)])
def test_residual_of_an_exact_reference_vanishes(ic, mu):
    p = CDR(ic)
    r = p.residual_of(p.reference_fn(mu), cdr_points(), mu)
    assert r.abs().max().item() < 1e-10


@pytest.mark.parametrize("ic,mu", [("1+sin", (3.0, 1.0, 2.0)), ("gauss", (1.0, 5.0, 5.0)),
                                   ("gauss_pi_2", (3.0, 1.0, 2.0))])
def test_residual_of_the_splitting_reference_is_small(ic, mu):
    p = CDR(ic)
    fn = p.reference_fn(mu)
    r = p.residual_of(fn, cdr_points(), mu).detach().abs()
    assert r.max().item() < 2e-4 and r.median().item() < 1e-6
    x, t = p.grid(nx=256, nt=20)
    on_grid = fn(grid_coords(x, t)).detach().numpy().reshape(t.size, x.size)
    np.testing.assert_allclose(on_grid, p.reference(mu, x, t), atol=1e-6)
    wrong = p.residual_of(fn, cdr_points(), (mu[0] + 1, mu[1], mu[2])).detach().abs()
    assert wrong.max().item() > 0.1  # the residual does see the convection speed


def test_cdr_residual_accepts_per_point_parameters_and_network_columns():
    p = CDR("1+sin")
    c = cdr_points(50).requires_grad_(True)
    u = torch.sin(c[:, :1] - c[:, 1:]) * c[:, 1:]  # (N, 1), any differentiable field
    mu = torch.tensor([[2.0, 1.0, 3.0]] * 50, dtype=torch.float64)
    torch.testing.assert_close(p.residual(u, c, mu), p.residual(u, c, [2.0, 1.0, 3.0]))
    # u_t + beta u_x - nu u_xx - rho u (1 - u) by hand for u = t sin(x - t)
    x, t = c[:, 0].detach(), c[:, 1].detach()
    s, co = torch.sin(x - t), torch.cos(x - t)
    uu = t * s
    hand = (s - t * co) + 2.0 * t * co - 1.0 * (-t * s) - 3.0 * uu * (1 - uu)
    torch.testing.assert_close(p.residual(u, c, mu).detach(), hand, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- Helmholtz


def test_helmholtz_residual_of_the_analytic_solution_vanishes():
    h = Helmholtz2D()
    assert h.param_names == ("a1", "a2") and h.boundary == "dirichlet" and not h.time_dependent
    g = torch.Generator().manual_seed(1)
    c = 2 * torch.rand(400, 2, generator=g, dtype=torch.float64) - 1
    for mu in ((2.0, 2.0), (2.5, 2.5), (2.3, 2.9)):
        r = h.residual_of(h.reference_fn(mu), c, mu).detach()
        assert r.abs().max().item() < 1e-10
    assert h.residual_of(h.reference_fn((2.5, 2.5)), c, (2.6, 2.5)).detach().abs().max() > 1.0
    other_k = Helmholtz2D(k=3.0)
    assert other_k.residual_of(other_k.reference_fn((2.0, 2.0)), c, (2.0, 2.0)).detach().abs().max() < 1e-10
    per_point = torch.tensor([[2.3, 2.9]] * 400, dtype=torch.float64)
    torch.testing.assert_close(h.forcing(c, per_point), h.forcing(c, (2.3, 2.9)))
    with pytest.raises(ValueError, match="steady"):
        h.initial_condition(np.zeros(3))


def test_helmholtz_reference_grid_and_boundary_values():
    h = Helmholtz2D()
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 7)
    ref = h.reference((2.5, 3.0), x, y)
    assert ref.shape == (7, 5)
    np.testing.assert_allclose(ref[2, 3], math.sin(2.5 * math.pi * x[3]) * math.sin(3.0 * math.pi * y[2]))
    edge = torch.tensor([[-1.0, 0.3], [1.0, -0.2], [0.4, 1.0], [0.1, -1.0]], dtype=torch.float64)
    assert h.boundary_value(edge, (2.0, 3.0)).abs().max() < 1e-14  # integer a: u = 0 on the boundary
    assert h.boundary_value(edge, (2.5, 2.5)).abs().max() > 0.5  # sin(2.5 pi) = 1: it is not


@pytest.mark.parametrize("nu_rows", [(0.0, 0.0), (0.0, 2.0)])
def test_cdr_residual_skips_u_xx_only_when_no_point_diffuses(nu_rows):
    """nu = 0 everywhere: u_xx is not formed, and the residual and its parameter gradients are the
    full formula's bit for bit; one diffusing row brings the term back."""
    from lemon_pl.pinn.derivatives import grad, partial

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    coords = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    mu = torch.tensor([[30.0, nu_rows[0], 1.0]] * 3 + [[35.0, nu_rows[1], 2.0]] * 3, dtype=torch.float64)
    pde = ConvectionDiffusionReaction()

    def full(u):
        g = grad(u, coords)
        u_flat = u.reshape(-1)
        return g[:, 1] + mu[:, 0] * g[:, 0] - mu[:, 1] * partial(g[:, 0], coords, 0) - mu[:, 2] * u_flat * (1 - u_flat)

    got, want = pde.residual(net(coords), coords, mu), full(net(coords))
    assert torch.equal(got, want)
    g_got = torch.autograd.grad(got.square().sum(), list(net.parameters()))
    g_want = torch.autograd.grad(want.square().sum(), list(net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g_got, g_want))
