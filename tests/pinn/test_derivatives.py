"""Derivative helpers against analytic derivatives; torch.func == autograd; parameter gradients."""

from __future__ import annotations

import pytest
import torch

from lemon_pl.pinn.derivatives import (
    func_derivatives,
    func_grad,
    func_hessian,
    func_laplacian,
    grad,
    laplacian,
    partial,
    partial2,
)

A, B = 1.7, 0.6


def points(n=64, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1).requires_grad_(True)


def wave(c):
    """u = sin(a x) exp(-b t)."""
    return torch.sin(A * c[:, 0]) * torch.exp(-B * c[:, 1])


def poly(c):
    """u = x^2 y^3 + cos(x y), returned as a column (N, 1)."""
    x, y = c[:, 0], c[:, 1]
    return (x**2 * y**3 + torch.cos(x * y)).unsqueeze(1)


def close(a, b, tol=1e-12):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_first_and_second_derivatives_of_sin_exp():
    c = points()
    x, t = c[:, 0].detach(), c[:, 1].detach()
    s, e = torch.sin(A * x), torch.exp(-B * t)
    u = wave(c)
    close(grad(u, c), torch.stack([A * torch.cos(A * x) * e, -B * s * e], dim=1))
    close(partial(u, c, 0), A * torch.cos(A * x) * e)
    close(partial2(u, c, 0), -A**2 * s * e)
    close(partial2(u, c, 1), B**2 * s * e)
    close(partial2(u, c, 0, 1), -A * B * torch.cos(A * x) * e)
    close(laplacian(u, c), (B**2 - A**2) * s * e)
    close(laplacian(u, c, dims=[0]), -A**2 * s * e)


def test_mixed_and_laplacian_of_polynomial_plus_cosine():
    c = points(seed=1)
    x, y = c[:, 0].detach(), c[:, 1].detach()
    u = poly(c)  # (N, 1) is accepted as well as (N,)
    sxy, cxy = torch.sin(x * y), torch.cos(x * y)
    u_x = 2 * x * y**3 - y * sxy
    u_y = 3 * x**2 * y**2 - x * sxy
    u_xx = 2 * y**3 - y**2 * cxy
    u_yy = 6 * x**2 * y - x**2 * cxy
    u_xy = 6 * x * y**2 - sxy - x * y * cxy
    close(grad(u, c), torch.stack([u_x, u_y], dim=1))
    close(partial2(u, c, 0), u_xx)
    close(partial2(u, c, 1), u_yy)
    close(partial2(u, c, 0, 1), u_xy)
    close(partial2(u, c, 1, 0), u_xy)
    close(laplacian(u, c), u_xx + u_yy)


def test_fields_that_do_not_depend_on_coords_and_bad_shapes():
    c = points()
    lin = 3 * c[:, 0] + c[:, 1]
    close(partial2(lin, c, 0), torch.zeros(64, dtype=torch.float64))  # derivative vanished
    close(grad(torch.ones(64, dtype=torch.float64), c), torch.zeros_like(c))
    with pytest.raises(ValueError, match="requires_grad|require grad"):
        grad(lin, c.detach())
    with pytest.raises(ValueError, match="shape"):
        grad(lin[:10], c)


def mlp(d=2, width=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                               torch.nn.Tanh(), torch.nn.Linear(width, 1)).double()


def test_torch_func_path_equals_autograd_path():
    net = mlp(d=3)
    c = points(n=40, d=3, seed=2)
    u = net(c)
    g = grad(u, c)
    h = torch.stack([grad(g[:, i], c) for i in range(3)], dim=1)
    close(func_grad(net, c), g)
    close(func_hessian(net, c), h)
    fu, fg, fh = func_derivatives(net, c)
    close(fu, u[:, 0])
    close(fg, g)
    close(fh, h)
    close(func_laplacian(net, c), laplacian(u, c))
    close(func_laplacian(net, c, dims=[0, 2]), laplacian(u, c, dims=[0, 2]))
    c2 = c[:, :2]  # the very tensor u is computed from (another slice would not be in the graph)
    close(func_laplacian(wave, c2), laplacian(wave(c2), c2))  # any f, not only modules


def residual_loss(net, c, path):
    """Mean square of u_t - u_xx + u^2 through one derivative path."""
    if path == "autograd":
        u = net(c)[:, 0]
        g = grad(u, c)
        r = g[:, 1] - partial(g[:, 0], c, 0) + u**2
    else:
        u, g, h = func_derivatives(net, c)
        r = g[:, 1] - h[:, 0, 0] + u**2
    return r.pow(2).mean()


@pytest.mark.parametrize("path", ["autograd", "torch.func"])
def test_parameter_gradient_of_a_residual_loss_matches_finite_differences(path):
    net = mlp(seed=3)
    c = points(n=32, seed=4)
    w = net[2].weight
    net.zero_grad()
    residual_loss(net, c, path).backward()
    analytic = w.grad[3, 5].item()
    assert analytic != 0.0
    eps = 1e-6
    with torch.no_grad():
        w[3, 5] += eps
    plus = residual_loss(net, c, path).item()
    with torch.no_grad():
        w[3, 5] -= 2 * eps
    minus = residual_loss(net, c, path).item()
    assert abs((plus - minus) / (2 * eps) - analytic) <= 1e-7 * max(1.0, abs(analytic))
