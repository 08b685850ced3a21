"""The torch solvers of the finite-volume, reaction-diffusion and porous-medium families.

Their physics is checked by tests/data/test_families.py (every exactness / invariant /
residual check runs for both backends). Here: the torch solution equals numpy's to solver
tolerance, a row does not depend on the rest of its batch, float32 stays close to float64,
the per-row adaptive march lands on every frame and isolates blow-ups, and the API.

Tolerances. torch vs numpy (float64): 1e-11 absolute on states of size <= 1.5. Both compute
the same discretisation; what differs is round-off (operation order, the limiter's power-of-two
form, sqrt(1 - sin^2) for |cos|, the merged half diffusion steps, libm vs SLEEF), measured
<= 4e-13 after the ~350 SSP-RK3 / 252 Strang / 7,000 Heun steps. A change of the method is
far larger: CFL 0.39 instead of 0.4 moves the FV solutions by 1e-4 .. 9e-4, one more Strang
sub-step per frame the logistic one by 1e-7, CFL 0.44 instead of 0.45 the porous one by 8e-9.
numpy is solved one row at a time: its march takes the smallest step of its whole batch,
the torch march each row's own (for one row they coincide). float32 vs float64: 1e-4
(measured <= 2e-5: float32 round-off, 6e-8, accumulated over the steps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lemon_pl.data import solvers
from lemon_pl.data import torch_solvers as ts
from lemon_pl.data.families import Family, get_family, list_families
from lemon_pl.data.params import Param

FV = ["burgers", "conservation_sinflux", "conservation_cubicflux", "inviscid_burgers",
      "inviscid_conservation_sinflux", "inviscid_conservation_cubicflux"]
RD = ["diff_logisreact_1D", "diff_linearreact_1D", "diff_bistablereact_1D", "diff_squarelogisticreact_1D"]
TORCH_FAMILIES = FV + RD + ["porous_medium"]
TOL = 1e-11
TOL_F32 = 1e-4


def _case(name, n_ops=3, per_op=2, seed=5):
    """Per-row parameters of ``n_ops`` operators (gamma 0.5) x ``per_op`` ICs; FV rows half negative."""
    fam = get_family(name)
    rng = np.random.default_rng(seed)
    if name == "porous_medium":
        ops = [{"m": m} for m in (2, 3, 4)][:n_ops]
    else:
        ops = [fam.sample_params(rng, gamma=0.5) for _ in range(n_ops)]
    params = np.repeat(np.array([fam.params_array(p) for p in ops]), per_op, axis=0)
    u0 = fam.sample_initial_conditions(rng, n_ops * per_op, 128)
    if name in FV:
        u0[1::2] = 2 * u0[1::2] - 1.5  # negative states: the sign of the wave speed
    nt = 32 if name == "porous_medium" else 64
    return fam, params, u0, nt


def test_the_eleven_families_have_torch_solvers():
    for name in TORCH_FAMILIES:
        assert get_family(name).has_torch, name
    assert set(TORCH_FAMILIES) <= set(list_families())


@pytest.mark.parametrize("name", TORCH_FAMILIES)
def test_torch_matches_numpy_for_sampled_ics(name):
    fam, params, u0, nt = _case(name)
    ut = fam.solve_torch(params, u0, nt=nt)
    assert ut.shape == (len(u0), nt, 128) and ut.dtype == torch.float64
    un = np.stack([fam.solve(params[i], u0[i:i + 1], nt=nt)[0] for i in range(len(u0))])
    np.testing.assert_array_equal(ut[:, 0].numpy(), u0)
    err = np.abs(ut.numpy() - un).max()
    assert err < TOL, f"{name}: torch vs numpy {err:.2e}"
    # the solutions really move (a frozen or trivial solver would pass the comparison vacuously)
    assert np.abs(un[:, -1] - u0).max() > 1e-2


@pytest.mark.slow  # ~25 s over the families; the default suite keeps the agreement and dtype checks
@pytest.mark.parametrize("name", TORCH_FAMILIES)
def test_a_row_does_not_depend_on_the_rest_of_its_batch(name):
    """Several operators in one batch == each operator alone == each row alone, bitwise."""
    fam, params, u0, nt = _case(name)
    mixed = fam.solve_torch(params, u0, nt=nt)
    alone = torch.cat([fam.solve_torch(params[i], u0[i:i + 2], nt=nt) for i in range(0, len(u0), 2)])
    torch.testing.assert_close(mixed, alone, rtol=0, atol=0)
    single = fam.solve_torch(params[3:4], u0[3:4], nt=nt)
    torch.testing.assert_close(mixed[3:4], single, rtol=0, atol=0)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("inviscid_burgers", "porous_medium")
                                  else n for n in TORCH_FAMILIES])  # these two: 10-12 s each, in CI's slow step
def test_float32_stays_close_to_float64(name):
    fam, params, u0, nt = _case(name, n_ops=2)
    u64 = fam.solve_torch(params, u0, nt=nt)
    u32 = fam.solve_torch(params, u0, nt=nt, dtype="float32")
    assert u32.dtype == torch.float32
    err = (u32.double() - u64).abs().max().item()
    assert err < TOL_F32, f"{name}: float32 vs float64 {err:.2e}"


def test_solve_torch_inputs():
    fam = get_family("burgers")
    u0 = fam.sample_initial_conditions(np.random.default_rng(0), 3, 64)
    p = {"eps": 0.01, "k": 1.0}
    a = fam.solve_torch(p, u0, nt=8)
    # a parameter row as a sequence, as a (B, P) array, as a tensor; u0 as a tensor
    torch.testing.assert_close(fam.solve_torch([0.01, 1.0], u0, nt=8), a, rtol=0, atol=0)
    torch.testing.assert_close(fam.solve_torch(np.tile([0.01, 1.0], (3, 1)), torch.as_tensor(u0), nt=8), a,
                               rtol=0, atol=0)
    torch.testing.assert_close(fam.solve_torch(torch.tensor([[0.01, 1.0]] * 3, dtype=torch.float64), u0, nt=8, dtype=torch.float64),
                               a, rtol=0, atol=0)
    assert fam.solve_torch(p, torch.as_tensor(u0, dtype=torch.float32), nt=8, dtype="float32").dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        fam.solve_torch(np.ones((2, 2)), u0, nt=8)
    with pytest.raises(ValueError, match="missing"):
        fam.solve_torch({"k": 1.0}, u0, nt=8)
    with pytest.raises(ValueError, match="shape"):
        fam.solve_torch(p, u0[0], nt=8)
    with pytest.raises(ValueError, match="dtype"):
        fam.solve_torch(p, u0, nt=8, dtype="float16")


class _NoTorch(Family):
    def _solve(self, p, u0, t):
        return np.repeat(u0[:, None], t.size, axis=1)

    def _rhs_tree(self, p):
        return []


def test_a_family_without_a_torch_solver_says_so():
    fam = _NoTorch("frozen", (Param("a", 1.0),), 1.0, "sines", "u_t = 0")
    assert not fam.has_torch
    with pytest.raises(NotImplementedError, match="frozen has no torch solver"):
        fam.solve_torch({"a": 1.0}, np.zeros((1, 16)))


def test_frame_steps_is_numpy_rule():
    for t_final, nt, max_dt in [(2.0, 64, 2.0 / 256), (0.5, 16, 0.01), (1.0, 7, 0.3)]:
        t = np.arange(nt) * (t_final / nt)
        assert ts.frame_steps(t.tolist(), max_dt) == solvers._frame_steps(t, max_dt)


# ----------------------------------------------------------------------------- the adaptive march


def _clock(max_dts, fail_after=None):
    """State (B, 2) = [time integrated by u' = 1, steps taken], stable steps ``max_dts``; row
    ``fail_after[0]`` turns NaN past t = fail_after[1]. Returns (advance, stable steps of the start)."""
    md = torch.tensor(max_dts, dtype=torch.float64)[:, None]

    def advance(s, dt):
        out = torch.cat([s[:, :1] + dt, s[:, 1:] + (dt > 0)], dim=1)
        if fail_after is not None:
            row, when = fail_after
            if out[row, 0] > when:
                out[row] = math.nan
        return out, torch.where(torch.isfinite(out[:, :1]), md, torch.full_like(md, math.nan))

    return advance, md


def test_march_lands_on_every_frame_with_each_rows_own_steps():
    t = np.arange(16) * (1.0 / 16)
    max_dts = [0.007, 0.05, 0.3]
    advance, md0 = _clock(max_dts)
    out = ts.adaptive_march(torch.zeros(3, 2, dtype=torch.float64), t, advance, md0)
    assert out.shape == (3, 16, 2)
    # every frame is at its output time, for every row (u' = 1 integrated by the steps)
    np.testing.assert_allclose(out[:, :, 0].numpy(), np.broadcast_to(t, (3, 16)), rtol=0, atol=1e-14)
    # each row took numpy's steps for itself: ceil(frame spacing / its max_dt) per frame
    for row, md in enumerate(max_dts):
        expect = sum(solvers._frame_steps(t, md))
        count = {"n": 0}

        def np_step(u, dt):
            count["n"] += 1
            return u + dt

        solvers.march(np.zeros((1, 1)), t, np_step, lambda u, md=md: md)
        assert out[row, -1, 1].item() == expect == count["n"]


def test_march_turns_a_blown_up_row_into_nan_and_lets_the_others_finish():
    t = np.arange(16) * (1.0 / 16)
    advance, md0 = _clock([0.02, 0.02, 0.05], fail_after=(1, 0.45))
    out = ts.adaptive_march(torch.zeros(3, 2, dtype=torch.float64), t, advance, md0).numpy()
    bad = np.flatnonzero(~np.isfinite(out[1, :, 0]))
    # frames up to 0.4375 are fine; the step past 0.45 (working on frame 0.5) made the row NaN
    assert bad.tolist() == list(range(8, 16))
    assert np.all(np.isfinite(out[[0, 2]]))
    ref = ts.adaptive_march(torch.zeros(2, 2, dtype=torch.float64), t, *_clock([0.02, 0.05])).numpy()
    np.testing.assert_array_equal(out[[0, 2]], ref)


@pytest.mark.parametrize("name", ["inviscid_conservation_sinflux", "porous_medium"])
def test_a_non_finite_initial_condition_spoils_only_its_row(name):
    fam, params, u0, nt = _case(name, n_ops=1, per_op=3)
    bad = u0.copy()
    bad[1, 5] = np.inf
    u = fam.solve_torch(params, bad, nt=nt)
    assert torch.isnan(u[1, 1:]).all()
    torch.testing.assert_close(u[[0, 2]], fam.solve_torch(params[[0, 2]], u0[[0, 2]], nt=nt), rtol=0, atol=0)
    assert not fam.accept(u.numpy())[1] and fam.accept(u.numpy())[[0, 2]].all()


# ----------------------------------------------------------------------------- torch.compile


@pytest.mark.slow
@pytest.mark.parametrize("name", ["conservation_sinflux", "diff_logisreact_1D", "diff_bistablereact_1D", "porous_medium"])
def test_compiled_steps_match_eager(name):
    """``set_compile``: the fused kernels compute the same numbers to round-off (float64), and a
    row still does not depend on its batch (a static first compile and the dynamic recompile for
    a second batch size agree bitwise). Tens of seconds of compilation in a fresh cache."""
    fam, params, u0, nt = _case(name)
    eager = fam.solve_torch(params, u0, nt=nt)
    ts.set_compile(True)
    try:
        part = fam.solve_torch(params[:2], u0[:2], nt=nt)
        full = fam.solve_torch(params, u0, nt=nt)
    finally:
        ts.set_compile(False)
    assert not ts.compile_enabled()
    assert (full - eager).abs().max().item() < 1e-12
    torch.testing.assert_close(full[:2], part, rtol=0, atol=0)


# ----------------------------------------------------------------------------- CUDA


def _cuda_case(name):
    fam, params, u0, nt = _case(name, n_ops=2)
    return fam, params, u0, nt, fam.solve_torch(params, u0, nt=nt)


@pytest.mark.gpu
@pytest.mark.parametrize("name", TORCH_FAMILIES)
def test_cuda_matches_cpu(name):
    """Same code on CUDA: float64 agrees with CPU to round-off (cuFFT, CUDA libm), float32 to 1e-4."""
    fam, params, u0, nt, cpu = _cuda_case(name)
    gpu = fam.solve_torch(params, u0, nt=nt, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    assert (gpu.cpu() - cpu).abs().max().item() < 1e-10
    g32 = fam.solve_torch(params, u0, nt=nt, device="cuda", dtype=torch.float32)
    assert (g32.cpu().double() - cpu).abs().max().item() < TOL_F32
    # rows stay independent of their batch on the GPU too
    alone = fam.solve_torch(params[:2], u0[:2], nt=nt, device="cuda")
    torch.testing.assert_close(gpu[:2], alone, rtol=0, atol=0)
