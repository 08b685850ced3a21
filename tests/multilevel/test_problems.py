"""The multi-level solution-map problems: exact cases, convergence orders, levels, samplers."""

from __future__ import annotations

import numpy as np
import pytest

from lemon_pl.multilevel.problems import (RoughElliptic, SchrodingerGroundState, cell_centres,
                                          measure_cost, periodic_points)

ELL = RoughElliptic()
SCH = SchrodingerGroundState()


def _orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def _rel(u, ref):
    return np.linalg.norm(u - ref) / np.linalg.norm(ref)


# ---- -(a u')' = f ------------------------------------------------------------------------------


def test_elliptic_constant_coefficient_matches_quadratic_at_second_order():
    errors = []
    for n in (16, 32, 64, 128):
        x = cell_centres(n)
        errors.append(np.abs(ELL.solve(np.ones(n), 1.0) - x * (1 - x) / 2).max())
    # not exact (the half-cell boundary flux is first order locally) but second order globally
    assert errors[0] > 1e-5
    assert np.all(_orders(errors) > 1.9)
    assert errors[2] < 1e-3


def test_elliptic_jump_at_a_cell_face_matches_the_exact_piecewise_solution():
    a1, a2, xi = 1.0, 20.0, 0.25
    c = (xi ** 2 / (2 * a1) + (1 - xi ** 2) / (2 * a2)) / (xi / a1 + (1 - xi) / a2)

    def exact(x):  # u = int_0^x (c - s) / a(s) ds, c from u(1) = 0
        return np.where(x < xi, (c * x - x ** 2 / 2) / a1,
                        (c * xi - xi ** 2 / 2) / a1 + (c * (x - xi) - (x ** 2 - xi ** 2) / 2) / a2)

    # the reference is right: u(1) = 0, continuous, flux a u' continuous across the jump
    d = 1e-7
    assert abs(exact(np.array(1.0))) < 1e-14
    assert exact(np.array(xi - 1e-12)) == pytest.approx(exact(np.array(xi)), abs=1e-10)
    left = a1 * (exact(np.array(xi - d)) - exact(np.array(xi - 2 * d))) / d
    right = a2 * (exact(np.array(xi + 2 * d)) - exact(np.array(xi + d))) / d
    assert left == pytest.approx(right, abs=1e-5)
    errors = []
    for n in (16, 32, 64, 128):  # xi is a cell face of every grid
        x = cell_centres(n)
        errors.append(np.abs(ELL.solve(np.where(x < xi, a1, a2)) - exact(x)).max())
    assert np.all(_orders(errors) > 1.9)
    assert errors[1] < 2e-4


def test_elliptic_source_forms_agree_and_solution_is_linear_in_f():
    rng = np.random.default_rng(3)
    a = ELL.sample_coefficient(rng, 64)
    x = cell_centres(64)
    f = np.sin(3 * x)
    u_arr = ELL.solve(a, f)
    assert np.allclose(ELL.solve(a, lambda s: np.sin(3 * s)), u_arr)
    assert np.allclose(ELL.solve(a, 2.0 * f + 1.0), 2.0 * u_arr + ELL.solve(a, 1.0))
    # discrete balance: total flux out of the domain equals the total source (f = 1 -> 1)
    u = ELL.solve(a, 1.0)
    h = 1 / 64
    out = a[0] * u[0] / (h / 2) + a[-1] * u[-1] / (h / 2)
    assert out == pytest.approx(1.0, rel=1e-10)


def test_elliptic_levels_converge_and_harmonic_beats_arithmetic():
    n_fine = 1024
    for seed in range(3):
        a = ELL.sample_coefficient(np.random.default_rng(seed), n_fine)
        assert a.max() / a.min() > 20  # rough and jumpy
        u_fine = ELL.solve(a)
        err = {how: [_rel(ELL.interpolate(ELL.solve(ELL.restrict(a, n, how)), n_fine), u_fine)
                     for n in (32, 64, 128)]
               for how in ("harmonic", "arithmetic")}
        assert np.all(np.diff(err["harmonic"]) < 0), err
        assert err["harmonic"][0] < 0.05, err
        assert np.all(np.asarray(err["arithmetic"]) > 2 * np.asarray(err["harmonic"])), err


def test_elliptic_batch_equals_per_sample_solves():
    rng = np.random.default_rng(5)
    a = ELL.sample_coefficient(rng, 64, size=7)
    f = rng.standard_normal((7, 64))
    batch = ELL.solve_batch(a, f)
    assert batch.shape == (7, 64)
    assert np.allclose(batch, np.stack([ELL.solve(a[i], f[i]) for i in range(7)]), atol=1e-13)
    with pytest.raises(ValueError):
        ELL.solve_batch(-a, f)


def test_elliptic_restrict_and_interpolate():
    rng = np.random.default_rng(1)
    a = ELL.sample_coefficient(rng, 64, size=2)
    blocks = a.reshape(2, 8, 8)
    assert np.allclose(ELL.restrict(a, 8, "harmonic"), 8 / np.sum(1 / blocks, axis=-1))
    assert np.allclose(ELL.restrict(a, 8, "arithmetic"), blocks.mean(-1))
    assert np.array_equal(ELL.restrict(a, 8, "sample"), blocks[..., 4])
    assert np.all(ELL.restrict(a, 8, "harmonic") <= ELL.restrict(a, 8, "arithmetic"))
    assert np.allclose(ELL.restrict(np.full(64, 3.0), 16, "harmonic"), 3.0)
    with pytest.raises(ValueError):
        ELL.restrict(a, 10)
    u = rng.standard_normal((3, 16))
    for n_fine in (48, 64, 100):
        ref = np.stack([np.interp(cell_centres(n_fine), np.r_[0.0, cell_centres(16), 1.0],
                                  np.r_[0.0, row, 0.0]) for row in u])
        assert np.allclose(ELL.interpolate(u, n_fine), ref)
    assert np.allclose(ELL.interpolate(u, 48)[:, 1::3], u)  # odd ratio: coarse centres kept
    assert np.array_equal(ELL.interpolate(u, 64, "constant"), np.repeat(u, 4, axis=-1))


def test_elliptic_sampler_seeded_and_field_statistics():
    assert np.array_equal(ELL.sample_coefficient(7, 128, size=3),
                          ELL.sample_coefficient(7, 128, size=3))
    assert not np.array_equal(ELL.sample_coefficient(7, 128), ELL.sample_coefficient(8, 128))
    # the FFT evaluation is the Fourier sum at the cell centres (replay the same draws)
    smooth = RoughElliptic(jump=1.0, corr_length=0.2, variance=0.5)
    n = 32
    rng = np.random.default_rng(11)
    xi, eta = rng.standard_normal((1, n - 1)), rng.standard_normal((1, n - 1))
    k = np.arange(1, n)
    lam = (1 + (np.pi * k * 0.2) ** 2) ** -1.0
    lam *= 0.5 / lam.sum()
    x = cell_centres(n)
    g = (np.sqrt(lam) * xi[0]) @ np.cos(np.pi * np.outer(k, x)) \
        + (np.sqrt(lam) * eta[0]) @ np.sin(np.pi * np.outer(k, x))
    assert np.allclose(np.log(smooth.sample_coefficient(11, n)), g)
    # pointwise variance of log a is the configured one; the jump multiplies by 10 or 1/10
    logs = np.log(RoughElliptic(jump=1.0, variance=1.0).sample_coefficient(0, 256, size=400))
    assert np.var(logs) == pytest.approx(1.0, rel=0.1)
    jumpy = np.log(ELL.sample_coefficient(2, 256, size=20))
    steps = np.abs(np.diff(jumpy, axis=-1)).max(-1)
    assert np.all(steps > np.log(10) - 0.5)


# ---- -1/2 u'' + V u = E u ------------------------------------------------------------------------


def _fourier_reference(terms, n_modes=40):
    """Lowest eigenpair of -1/2 u'' + V u, V = sum A cos(2 pi m x + phi), in the Fourier basis."""
    k = np.arange(-n_modes, n_modes + 1)
    ham = np.diag(0.5 * (2 * np.pi * k) ** 2).astype(complex)
    for amp, m, phi in terms:
        ham += np.diag(np.full(k.size - m, amp * np.exp(1j * phi) / 2), -m)  # <k+m| V |k>
        ham += np.diag(np.full(k.size - m, amp * np.exp(-1j * phi) / 2), m)
    w, vec = np.linalg.eigh(ham)
    return w[0], k, vec[:, 0]


def test_schrodinger_constant_potential_exact():
    for n in (32, 33, 64):
        u, e = SCH.solve(np.full(n, 2.5), return_energy=True)
        assert e == pytest.approx(2.5, abs=1e-10)
        assert np.allclose(u, 1.0, atol=1e-10)


def test_schrodinger_cosine_potential_second_order_against_fourier_reference():
    terms = [(8.0, 1, 0.0), (3.0, 3, 0.4)]
    e_ref, k, c = _fourier_reference(terms)
    err_e, err_u = [], []
    for n in (32, 64, 128):
        x = periodic_points(n)
        v = sum(a * np.cos(2 * np.pi * m * x + p) for a, m, p in terms)
        u, e = SCH.solve(v, return_energy=True)
        phase = np.exp(-1j * np.angle(c[k.size // 2]))  # make the k = 0 coefficient real
        u_ref = np.real(np.exp(2j * np.pi * np.outer(x, k)) @ (c * phase))
        u_ref *= np.sign(u_ref.sum()) * np.sqrt(n / np.sum(u_ref ** 2))
        err_e.append(abs(e - e_ref))
        err_u.append(np.abs(u - u_ref).max())
    assert np.all(np.abs(_orders(err_e) - 2) < 0.1), err_e
    assert np.all(np.abs(_orders(err_u) - 2) < 0.2), err_u
    assert err_e[0] < 0.2


@pytest.mark.parametrize("kind", ["rough", "oscillatory", "piecewise"])
def test_schrodinger_sign_normalisation_batch_and_solvers(kind):
    v = SCH.sample_potential(np.random.default_rng(4), 64, size=5, kind=kind)
    u, e = SCH.solve_batch(v, return_energy=True)
    assert u.shape == (5, 64) and e.shape == (5,)
    assert np.all(u > 0)
    assert np.allclose(np.sum(u ** 2, axis=-1) / 64, 1.0)
    assert np.all(e >= v.min(-1) - 1e-9)
    for i in range(5):
        ui, ei = SCH.solve(v[i], return_energy=True)
        assert np.array_equal(ui, u[i]) and ei == e[i]
    # the residual of the eigen-equation, and the sparse shift-invert solver agrees
    for i in range(5):
        residual = np.abs(SCH.hamiltonian(v[i]) @ u[i] - e[i] * u[i]).max()
        assert residual < 1e-8 * np.abs(e[i] * u[i]).max() + 1e-7
    us, es = SCH.solve_batch(v, return_energy=True, method="eigsh")
    assert np.allclose(es, e, atol=1e-9) and np.allclose(us, u, atol=1e-7)


def test_schrodinger_samplers_seeded_resolution_consistent():
    for kind in ("rough", "oscillatory", "piecewise"):
        a = SCH.sample_potential(9, 256, size=4, kind=kind)
        assert np.array_equal(a, SCH.sample_potential(9, 256, size=4, kind=kind))
        assert not np.array_equal(a, SCH.sample_potential(10, 256, size=4, kind=kind))
        # same seed, coarser grid: the same function at the coarser points
        assert np.allclose(SCH.sample_potential(9, 64, size=4, kind=kind), a[:, ::4])
    rough = SCH.sample_potential(0, 128, size=500, kind="rough")
    assert np.std(rough) == pytest.approx(SCH.rough_amplitude, rel=0.1)
    osc = SCH.sample_potential(0, 256, size=10, kind="oscillatory")
    assert np.allclose(osc.mean(-1), 0.0, atol=1e-9)  # integer wavenumbers 8..32 < 256
    spec = np.abs(np.fft.rfft(osc, axis=-1))
    assert np.all(spec[:, :8] < 1e-8) and np.all(spec[:, 8:33].max(-1) > 100)
    pw = SCH.sample_potential(0, 256, size=10, kind="piecewise")
    jumps = np.sum(np.roll(pw, -1, axis=-1) != pw, axis=-1)  # periodic: count all jumps
    assert np.all(jumps >= 2) and np.all(jumps <= 6)


def test_schrodinger_restrict_and_spectral_interpolate():
    rng = np.random.default_rng(2)
    v = SCH.sample_potential(rng, 128, size=3)
    assert np.array_equal(SCH.restrict(v, 32, "sample"), v[:, ::4])
    assert np.allclose(SCH.restrict(np.full(128, 4.0), 32, "average"), 4.0)
    avg = SCH.restrict(v, 32, "average")  # trapezoid over [x_j - 2h, x_j + 2h] on the fine grid
    w = np.array([0.5, 1, 1, 1, 0.5]) / 4
    ref = sum(wi * np.roll(v, -s, axis=-1)[:, ::4] for wi, s in zip(w, range(-2, 3)))
    assert np.allclose(avg, ref)
    assert np.allclose(avg.mean(-1), v.mean(-1))
    # a trigonometric polynomial of degree < n / 2 is interpolated exactly, points kept
    x16, x80 = periodic_points(16), periodic_points(80)
    trig = lambda x: 1 + np.cos(2 * np.pi * 3 * x) - 0.5 * np.sin(2 * np.pi * 7 * x)  # noqa: E731
    assert np.allclose(SCH.interpolate(trig(x16), 80), trig(x80))
    u = rng.standard_normal((2, 16))
    assert np.allclose(SCH.interpolate(u, 64)[:, ::4], u)
    assert np.allclose(SCH.restrict(SCH.interpolate(u, 64), 16, "fourier"), u)
    # levels: the interpolated coarse ground state approaches the fine one
    u_fine = SCH.solve_batch(v)
    errs = [_rel(SCH.interpolate(SCH.solve_batch(SCH.restrict(v, n)), 128), u_fine)
            for n in (16, 32, 64)]
    assert np.all(np.diff(errs) < 0), errs


def test_measure_cost_is_a_positive_time_per_sample():
    for problem in (ELL, SCH):
        t = measure_cost(problem, 32, batch=4, repeats=1)
        assert 0 < t < 1.0


def test_schrodinger_deep_well_both_solvers_find_the_ground_state():
    # E_0 far below the mean of V: a shift-invert solver shifted anywhere but below E_0
    # would return an excited state; the ground state is the one without a node
    x = periodic_points(128)
    v = -400.0 * np.exp(-(((x - 0.5) / 0.05) ** 2))
    for method in ("dense", "eigsh"):
        u, e = SCH.solve(v, return_energy=True, method=method)
        full = np.linalg.eigvalsh(SCH.hamiltonian(v))
        assert e == pytest.approx(full[0], abs=1e-8)
        assert np.all(u > 0) and np.argmax(u) in (63, 64, 65)
