"""Exact solutions the data engine's solvers are checked against (tests/data/test_families.py).

* :func:`cole_hopf_burgers`: viscous Burgers ``u_t + kappa u u_x = nu u_xx`` on the period 2, by the
  Cole-Hopf transform of a one-mode heat solution (optionally Galilean-boosted);
* :func:`characteristics`: the smooth solution of a scalar conservation law ``u_t + f(u)_x = 0``
  before its first shock, ``u(xi + f'(u0(xi)) t, t) = u0(xi)``, solved for ``xi`` point by point
  to round-off; :func:`breaking_time` is when that first shock forms.

Every function takes numpy arrays and broadcasts ``x`` and ``t``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Field = Callable[[np.ndarray], np.ndarray]


def cole_hopf_burgers(x, t, nu: float, kappa: float, a: float, n: int, c: float = 0.0):
    """``u`` of ``u_t + kappa u u_x = nu u_xx`` with period 2: ``w = kappa u`` solves Burgers' equation
    ``w_t + w w_x = nu w_xx`` as ``w = c - 2 nu phi_x / phi`` evaluated at ``x - c t``, where
    ``phi = 1 + a exp(-nu k^2 t) cos(k x)`` (``k = pi n``, ``|a| < 1``) solves the heat equation
    ``phi_t = nu phi_xx``; the constant ``c`` is a Galilean boost."""
    k = np.pi * n
    e = a * np.exp(-nu * k * k * np.asarray(t, dtype=float))
    xs = np.asarray(x, dtype=float) - c * t
    w = c + 2 * nu * k * e * np.sin(k * xs) / (1 + e * np.cos(k * xs))
    return w / kappa


def breaking_time(u0: Field, speed: Field, period: float = 2.0, samples: int = 4001) -> float:
    """``1 / max(-d/dxi f'(u0(xi)))`` over one period (sampled, central differences): when the first
    characteristics of ``u_t + f(u)_x = 0`` cross; ``inf`` when none ever do."""
    s = np.linspace(0.0, period, samples)
    steepest = float(np.max(-np.gradient(speed(u0(s)), s)))
    return 1.0 / steepest if steepest > 0 else float("inf")


def characteristics(x, t: float, u0: Field, speed: Field, period: float = 2.0, iterations: int = 200) -> np.ndarray:
    """The smooth solution of ``u_t + f(u)_x = 0`` from ``u0`` at time ``t`` (``speed`` is ``f'``):
    ``u(x, t) = u0(xi)`` where ``xi + f'(u0(xi)) t = x``. Before :func:`breaking_time` the left side
    grows strictly with ``xi``, so ``xi`` is found by bisection between ``x - t max f'`` and
    ``x - t min f'`` to round-off. A ValueError at or past the breaking time."""
    if t >= breaking_time(u0, speed, period):
        raise ValueError(f"t = {t} is at or past the breaking time {breaking_time(u0, speed, period):.6g}: "
                         "the solution has a shock")
    x = np.asarray(x, dtype=float)
    s = np.linspace(0.0, period, 4001)
    speeds = speed(u0(s))
    lo = x - t * float(np.max(speeds)) - 1e-9 * period
    hi = x - t * float(np.min(speeds)) + 1e-9 * period
    for _ in range(64):  # the sampled speeds may miss the extremes by a little: widen until bracketed
        low_out, high_out = lo + speed(u0(lo)) * t > x, hi + speed(u0(hi)) * t < x
        if not (low_out.any() or high_out.any()):
            break
        lo, hi = np.where(low_out, lo - period, lo), np.where(high_out, hi + period, hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        right = mid + speed(u0(mid)) * t > x
        hi = np.where(right, mid, hi)
        lo = np.where(right, lo, mid)
        if np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(mid))):
            break
    return u0(0.5 * (lo + hi))


__all__ = ["cole_hopf_burgers", "breaking_time", "characteristics"]
