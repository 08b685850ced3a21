"""Initial-condition samplers (lemon_pl.data.ics)."""

from __future__ import annotations

import numpy as np
import pytest

from lemon_pl.data import ics
from lemon_pl.data.ics import IC_SAMPLERS, grid

NX = 128


def _spectrum(u):
    return np.abs(np.fft.rfft(u, axis=-1))


def test_grid_cell_centres():
    x = grid(128)
    assert x.shape == (128,)
    np.testing.assert_allclose(np.diff(x), 2 / 128, rtol=0, atol=1e-15)
    assert x[0] == pytest.approx(1 / 128) and x[-1] == pytest.approx(2 - 1 / 128)
    with pytest.raises(ValueError):
        grid(4)


@pytest.mark.parametrize("name", sorted(IC_SAMPLERS))
@pytest.mark.parametrize("nx", [64, 128])
def test_shape_dtype_finite(name, nx):
    u = IC_SAMPLERS[name](np.random.default_rng(0), 7, nx)
    assert u.shape == (7, nx)
    assert u.dtype == np.float64
    assert np.all(np.isfinite(u))
    assert IC_SAMPLERS[name](np.random.default_rng(0), 0, nx).shape == (0, nx)


@pytest.mark.parametrize("name", sorted(IC_SAMPLERS))
def test_deterministic_for_a_seed(name):
    f = IC_SAMPLERS[name]
    a = f(np.random.default_rng(42), 16, NX)
    b = f(np.random.default_rng(42), 16, NX)
    c = f(np.random.default_rng(43), 16, NX)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # samples in a batch differ from each other
    assert np.min(np.abs(a[1:] - a[:-1]).max(axis=-1)) > 1e-3


@pytest.mark.parametrize("name", ["init_multi", "sines", "gaussian_bump", "gaussian_process"])
def test_unit_range(name):
    u = IC_SAMPLERS[name](np.random.default_rng(1), 200, NX)
    # min-max normalised: exactly [0, 1] per sample
    np.testing.assert_allclose(u.min(axis=-1), 0.0, atol=1e-15)
    np.testing.assert_allclose(u.max(axis=-1), 1.0, atol=1e-15)


def test_kdv_range():
    u = ics.kdv_gaussians(np.random.default_rng(1), 200, NX)
    np.testing.assert_allclose(u.min(axis=-1), 0.0, atol=1e-15)
    np.testing.assert_allclose(u.max(axis=-1), 0.5, atol=1e-15)


def test_fplanck_unit_sum_positive():
    p = ics.fplanck_gaussian(np.random.default_rng(1), 200, NX)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-14)
    assert np.all(p > 0)
    # peak of exp(-((x - mu)/sigma)^2), mu in [.5, 1.5], lies at a cell near mu
    x = grid(NX)
    peak = x[np.argmax(p, axis=-1)]
    assert np.all((peak > 0.5 - 2 / NX) & (peak < 1.5 + 2 / NX))


def test_sines_is_a_trig_polynomial_of_modes_up_to_2():
    u = ics.sines(np.random.default_rng(2), 300, NX)
    uh = _spectrum(u)
    # constant + modes 1, 2 only (pi n x with n in {1, 2} on a period of 2)
    assert np.max(uh[:, 3:]) < 1e-12 * np.max(uh[:, 1:3])
    assert np.all(uh[:, 1:3].max(axis=-1) > 1e-3)


def test_init_multi_mostly_trig_polynomials():
    """Without the 10% |.| and 10% window branches a sample has at most num_k modes <= k_tot."""
    n = 400
    for k_tot, num_k in [(4, 2), (2, 1)]:
        u = ics.init_multi(np.random.default_rng(3), n, NX, k_tot=k_tot, num_k=num_k)
        uh = _spectrum(u)
        scale = uh[:, 1:].max(axis=-1)
        pure = np.max(uh[:, k_tot + 1:], axis=-1) < 1e-12 * scale
        # expected fraction of untouched samples is 0.9 * 0.9 = 0.81
        assert 0.7 < pure.mean() < 0.92, pure.mean()
        n_modes = np.sum(uh[pure, 1:k_tot + 1] > 1e-10 * scale[pure, None], axis=-1)
        assert np.all(n_modes <= num_k) and np.all(n_modes >= 1)
        if num_k == 1:  # Klein-Gordon / Sine-Gordon ICs: a single mode of wavenumber 1 or 2
            assert np.all(n_modes == 1)
        # every chosen wavenumber appears
        present = uh[pure, 1:k_tot + 1] > 1e-10 * scale[pure, None]
        assert np.all(present.any(axis=0))


def test_init_multi_uses_true_period():
    """The reference's period 2 - dx is gone: pure samples are exact trig polynomials on [0, 2)."""
    u = ics.init_multi(np.random.default_rng(4), 64, NX, k_tot=4)
    uh = _spectrum(u)
    pure = np.max(uh[:, 5:], axis=-1) < 1e-12 * uh[:, 1:].max(axis=-1)
    assert pure.sum() > 30


@pytest.mark.parametrize("name, tail_tol", [("kdv_gaussians", 1e-10), ("gaussian_bump", 1e-20),
                                            ("fplanck_gaussian", 1e-20), ("gaussian_process", 1e-20)])
def test_bumps_are_smooth_and_periodic(name, tail_tol):
    """Periodic images instead of a detrending ramp: the spectrum decays to round-off.

    A seam discontinuity of height J would leave a spectral tail of order J / k, i.e. an
    energy fraction far above these bounds in the upper half of the modes.
    """
    u = IC_SAMPLERS[name](np.random.default_rng(5), 300, NX)
    uh = _spectrum(u) ** 2
    tail = uh[:, NX // 4:].sum(axis=-1) / uh[:, 1:].sum(axis=-1)
    assert tail.max() < tail_tol


def _seam_defect_ratio(u):
    """Largest 4th difference across the seam x=0 ~ x=2, relative to the largest interior one."""
    def d4(v):
        return v[..., 4:] - 4 * v[..., 3:-1] + 6 * v[..., 2:-2] - 4 * v[..., 1:-3] + v[..., :-4]
    across = np.concatenate([u[:, -4:], u[:, :4]], axis=-1)
    return np.abs(d4(across)).max(axis=-1) / np.abs(d4(u)).max(axis=-1)


def test_init_multi_window_is_periodic():
    u = ics.init_multi(np.random.default_rng(0), 2000, NX, k_tot=4)
    # smooth periodic samples have a ratio ~1 (sines: max 1.03 over 2000 samples; the window summed
    # over the periodic images gives at most 2.5 over 8 seeds; a non-periodic window gave 118)
    assert _seam_defect_ratio(u).max() < 5.0


def test_sines_and_gaussian_process_have_no_seam_defect():
    for name in ("sines", "gaussian_process", "gaussian_bump", "fplanck_gaussian"):
        u = IC_SAMPLERS[name](np.random.default_rng(0), 500, NX)
        assert _seam_defect_ratio(u).max() < 5.0, name


def test_gaussian_bump_centre_and_width():
    u = ics.gaussian_bump(np.random.default_rng(6), 200, NX)
    x = grid(NX)
    peak = x[np.argmax(u, axis=-1)]
    assert np.all((peak > 0.9 - 2 / NX) & (peak < 1.1 + 2 / NX))
    # width s / sqrt(A) in [0.9/sqrt(11), 1.1/sqrt(9)] = [0.27, 0.37]: u(peak +- 0.5) is small
    for row, c in zip(u, peak):
        far = np.abs(((x - c + 1) % 2) - 1) > 0.5
        assert row[far].max() < np.exp(-0.5 * (0.5 / 0.37) ** 2) + 1e-12


def test_gaussian_process_spectrum_is_rbf():
    """The periodic RBF sampler has mean spectral power ~ exp(-(k l)^2 / 2).

    The min-max normalisation rescales every sample, which tilts the averaged spectrum by up to
    a factor ~1.7 over modes 1..12 (measured); the Gaussian decay itself spans 12 decades there,
    so a tolerance of a factor e detects any wrong length scale (l * 1.2 is off by e^8 at mode 10).
    """
    length = 0.2
    u = ics.gaussian_process(np.random.default_rng(7), 400, NX, length=length)
    power = (_spectrum(u - u.mean(axis=-1, keepdims=True)) ** 2).mean(axis=0)
    k = 2 * np.pi * np.fft.rfftfreq(NX, d=2 / NX)
    modes = np.arange(1, 13)
    measured = np.log(power[modes] / power[1])
    expected = -0.5 * length**2 * (k[modes] ** 2 - k[1] ** 2)
    assert expected[-1] < -25
    assert np.all(np.abs(measured - expected) < 1.0)
