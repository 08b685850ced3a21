"""The standard 2-D Helmholtz benchmark with an analytic solution and Dirichlet data.

u_xx + u_yy + k^2 u - q(x, y; a1, a2) = 0 on [-1, 1]^2, u = sin(a1 pi x) sin(a2 pi y).
Conditions: ``residual`` (interior) and ``bc`` (the exact values on the boundary).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from lemon_pl.pinn.conditions import Condition, boundary, residual, value
from lemon_pl.pinn.derivatives import laplacian
from lemon_pl.pinn.problems.base import Domain, Mu, Param, Problem, lib


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
    params = (Param("a1", low=2.0, high=3.0, step=0.1, default=2.5),
              Param("a2", low=2.0, high=3.0, step=0.1, default=2.5))
    default_grid = (101, 101)

    def __init__(self, k: float = 1.0):
        self.k = float(k)

    def conditions(self) -> dict[str, Condition]:
        """The residual in the interior and the exact solution's values on the boundary."""
        return {"residual": residual(),
                "bc": value(boundary(), lambda mu, points: self.boundary_value(torch.as_tensor(points), mu).numpy())}

    @staticmethod
    def grid(nx: int = 101, ny: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uniform closed grids of [-1, 1] in x and y (``ny`` defaults to ``nx``)."""
        return np.linspace(-1.0, 1.0, nx), np.linspace(-1.0, 1.0, ny or nx)

    def exact(self, mu: Mu, x, y):
        """sin(a1 pi x) sin(a2 pi y), numpy or torch, broadcasting."""
        p = mu if isinstance(mu, dict) else self.mu(mu)
        m = lib(x)
        return m.sin(p["a1"] * math.pi * x) * m.sin(p["a2"] * math.pi * y)

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

    def solution(self, mu: Mu, points: np.ndarray) -> np.ndarray:
        return self.exact(self.mu(mu), points[:, 0], points[:, 1])

    def reference_fn(self, mu: Mu = None) -> Callable[[Tensor], Tensor]:
        p = self.mu(mu)
        return lambda c: self.exact(p, c[:, 0], c[:, 1])


__all__ = ["Helmholtz2D"]
