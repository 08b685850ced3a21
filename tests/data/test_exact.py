"""The exact solutions of lemon_pl.data.exact satisfy their equations (finite differences, to round-off)."""

from __future__ import annotations

import numpy as np
import pytest

from lemon_pl.data.exact import breaking_time, characteristics, cole_hopf_burgers


@pytest.mark.parametrize("a, n, c", [(0.95, 1, 0.0), (0.5, 2, 0.3), (-0.7, 1, -0.4)])
def test_cole_hopf_satisfies_viscous_burgers(a, n, c):
    """u_t + kappa u u_x - nu u_xx = 0 by 4th-order central differences at a few points: the residual
    is at the differences' own error (h = 1e-3: ~1e-9 relative to the terms), while nu off by 1%
    leaves a residual a thousand times larger."""
    nu, kappa = 0.0103 / np.pi, 1.07
    x = np.array([0.1, 0.45, 0.9, 1.3, 1.77])
    h = 1e-3

    def u(xx, tt, nu_=nu):
        return cole_hopf_burgers(xx, tt, nu_, kappa, a, n, c)

    def d(f, step):  # 4th-order central difference of a function of one offset
        return (-f(2 * step) + 8 * f(step) - 8 * f(-step) + f(-2 * step)) / (12 * step)

    for t in (0.0, 0.2, 0.7):
        def residual(nu_):
            ut = d(lambda s: u(x, t + s, nu_), h)
            ux = d(lambda s: u(x + s, t, nu_), h)
            uxx = (-u(x + 2 * h, t, nu_) + 16 * u(x + h, t, nu_) - 30 * u(x, t, nu_) + 16 * u(x - h, t, nu_)
                   - u(x - 2 * h, t, nu_)) / (12 * h * h)
            return ut + kappa * u(x, t, nu_) * ux - nu * uxx, np.abs(ut).max() + np.abs(nu * uxx).max()

        res, scale = residual(nu)
        assert np.abs(res).max() < 1e-7 * scale, (t, np.abs(res).max(), scale)
        wrong, _ = residual(1.01 * nu)
        assert np.abs(wrong).max() > 1e-5 * scale
    # periodic with period 2, and t = 0 is the Cole-Hopf profile of phi = 1 + a cos(pi n x)
    np.testing.assert_allclose(u(x + 2.0, 0.3), u(x, 0.3), atol=1e-12)
    k = np.pi * n
    np.testing.assert_allclose(kappa * u(x, 0.0), c + 2 * nu * k * a * np.sin(k * x) / (1 + a * np.cos(k * x)),
                               rtol=1e-14)


SPEEDS = {"burgers": lambda u: 1.07 * u, "sin flux": lambda u: 1.07 * np.cos(u), "cubic flux": lambda u: 1.07 * u * u}


@pytest.mark.parametrize("name", list(SPEEDS))
@pytest.mark.parametrize("mean, amp", [(1.0, 0.2), (-0.6, 0.3)])
def test_characteristics_satisfy_the_conservation_law_before_the_shock(name, mean, amp):
    """u_t + f'(u) u_x = 0 by central differences before the breaking time, and u keeps u0's values."""
    speed = SPEEDS[name]

    def u0(s):
        return mean + amp * np.sin(np.pi * s)

    t_break = breaking_time(u0, speed)
    assert 0 < t_break < np.inf
    x = np.linspace(0.05, 1.95, 9)
    h = 1e-4
    for t in (0.1 * t_break, 0.5 * t_break, 0.8 * t_break):
        u = characteristics(x, t, u0, speed)
        ut = (characteristics(x, t + h, u0, speed) - characteristics(x, t - h, u0, speed)) / (2 * h)
        ux = (characteristics(x + h, t, u0, speed) - characteristics(x - h, t, u0, speed)) / (2 * h)
        scale = np.abs(ut).max() + 1e-3
        assert np.abs(ut + speed(u) * ux).max() < 1e-5 * max(scale, np.abs(speed(u) * ux).max()), t
        assert u.min() >= mean - amp - 1e-12 and u.max() <= mean + amp + 1e-12
        # the defining relation holds to round-off: the foot of the characteristic carries u
        xi = x - speed(u) * t
        np.testing.assert_allclose(u0(xi), u, atol=1e-12)
    np.testing.assert_allclose(characteristics(x, 0.0, u0, speed), u0(x), atol=1e-14)
    with pytest.raises(ValueError, match="breaking time"):
        characteristics(x, 1.01 * t_break, u0, speed)


def test_a_linear_flux_never_breaks_and_is_a_shift():
    def u0(s):
        return np.sin(np.pi * s)

    assert breaking_time(u0, lambda u: 0.0 * u + 0.5) > 1e12  # inf up to the round-off of the sampled slope
    x = np.linspace(0, 2, 11)
    np.testing.assert_allclose(characteristics(x, 0.8, u0, lambda u: 0.0 * u + 0.5), u0(x - 0.4), atol=1e-14)
