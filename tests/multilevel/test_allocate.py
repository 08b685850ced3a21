"""Budget allocation across levels: MLMC baseline, error-model fits, the estimate, the optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lemon_pl.multilevel.allocate import (LevelModel, continuous_optimum, curriculum_errors,
                                          equal_split, estimate_final_error, fit_level_model,
                                          mlmc_allocation, mlmc_continuous, optimal_allocation,
                                          plan_table)

TOL = 1e-9  # relative floating-point slack on "cost <= budget"

# a synthetic 3-level problem: coarse levels cheap and biased, the finest unbiased but dear
MODELS = [LevelModel(a=1.0, alpha=0.5, b=0.08), LevelModel(a=1.1, alpha=0.6, b=0.03),
          LevelModel(a=1.2, alpha=0.7, b=0.004)]
COSTS = np.array([1.0, 4.0, 16.0])


def _cost(n, c):
    return float(np.asarray(n) @ np.asarray(c))


# ---- MLMC baseline -----------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [50.0, 333.3, 1e4])
def test_mlmc_allocation_keeps_the_budget_and_follows_the_continuous_formula(budget):
    c = np.array([0.3, 1.1, 4.7, 17.0])
    v = np.array([2.0, 0.5, 0.1, 0.02])
    n = mlmc_allocation(c, v, budget)
    star = (budget / np.sum(np.sqrt(v * c))) * np.sqrt(v / c)
    assert n.dtype.kind == "i" and np.all(n >= 1)
    assert _cost(n, c) <= budget * (1 + TOL)
    assert budget - _cost(n, c) < c.min()  # greedy stops only when nothing more fits
    # within rounding: never below floor(N*) where N* >= 1, and the extra is at most the
    # leftover of the floor, which is below sum(c)
    big = star >= 1
    if big.all():
        assert np.all(n >= np.floor(star))
        assert np.all((n - star) * c <= c.sum() + 1e-9)
    else:  # levels raised to min_samples were paid for by the others
        assert np.all(n[~big] == 1)
        assert np.all(n[big] <= np.floor(star[big]) + c.sum() / c[big])
    np.testing.assert_allclose(mlmc_continuous(c, v, budget), star)


def test_mlmc_ratios_are_sqrt_v_over_c_for_large_budgets():
    c = np.array([1.0, 3.0, 9.0])
    v = np.array([1.0, 0.3, 0.05])
    n = mlmc_allocation(c, v, 1e8)
    want = np.sqrt(v / c)
    np.testing.assert_allclose(n / n[0], want / want[0], rtol=1e-4)


def test_mlmc_greedy_rounding_beats_plain_floor_on_the_variance():
    c = np.array([1.0, 7.0, 13.0])
    v = np.array([1.0, 0.4, 0.3])
    budget = 97.0
    n = mlmc_allocation(c, v, budget)
    floor = np.maximum(np.floor(mlmc_continuous(c, v, budget)), 1)
    assert np.sum(v / n) <= np.sum(v / floor)
    # and it is the best integer point of the variance proxy on a brute-force grid (within 1 %)
    best = min(np.sum(v / np.array(k)) for k in itertools.product(range(1, 98), range(1, 14),
                                                                  range(1, 8))
               if _cost(k, c) <= budget)
    assert np.sum(v / n) <= best * 1.01


def test_mlmc_min_samples_is_kept_and_budget_still_holds():
    c = np.array([1.0, 10.0, 100.0])
    v = np.array([1.0, 1e-4, 1e-6])  # the continuous rule wants ~0 of the dear levels
    n = mlmc_allocation(c, v, 400.0, min_samples=2)
    assert np.all(n >= 2)
    assert _cost(n, c) <= 400.0 * (1 + TOL)
    assert 400.0 - _cost(n, c) < c.max()


@pytest.mark.parametrize("kwargs, word", [
    (dict(costs=[1, 2], variances=[1, 1], budget=-5), "budget"),
    (dict(costs=[1, 2], variances=[1, 1], budget=0.5), "cheapest"),
    (dict(costs=[1, 2], variances=[1, 1, 1], budget=10), "variances"),
    (dict(costs=[1, -2], variances=[1, 1], budget=10), "costs"),
    (dict(costs=[1, 2], variances=[1, -1], budget=10), "variances"),
    (dict(costs=[1, 2], variances=[0, 0], budget=10), "variances"),
    (dict(costs=[1, 2], variances=[1, 1], budget=10, min_samples=5), "min_samples"),
    (dict(costs=[1, 2], variances=[1, 1], budget=float("nan")), "budget"),
])
def test_mlmc_rejects_bad_input_naming_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        mlmc_allocation(**kwargs)


# ---- equal split --------------------------------------------------------------------------------


def test_equal_split_gives_each_level_its_share():
    n = equal_split(COSTS, 300.0)
    np.testing.assert_array_equal(n, [100, 25, 6])
    assert np.all(n * COSTS <= 100.0 + 1e-9)
    with pytest.raises(ValueError, match="cheapest"):
        equal_split(COSTS, 0.5)


# ---- level error model ------------------------------------------------------------------------


@pytest.mark.parametrize("a, alpha, b", [(0.8, 0.6, 0.02), (2.5, 1.3, 0.1), (0.3, 0.25, 0.005)])
def test_fit_recovers_noiseless_parameters(a, alpha, b):
    n = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048])
    model = fit_level_model(n, LevelModel(a, alpha, b)(n))
    np.testing.assert_allclose([model.a, model.alpha, model.b], [a, alpha, b], rtol=1e-3)


def test_fit_recovers_a_zero_floor():
    n = np.array([10, 20, 40, 80, 160, 320])
    model = fit_level_model(n, 0.7 * n ** -0.8)
    assert model.b < 1e-6
    np.testing.assert_allclose([model.a, model.alpha], [0.7, 0.8], rtol=1e-3)


def test_fit_degrades_gracefully_with_noise():
    truth = LevelModel(0.9, 0.55, 0.03)
    n = np.repeat([16, 32, 64, 128, 256, 512, 1024], 3)  # three seeds per pilot size
    grid = np.geomspace(16, 1024, 20)
    worst = {}
    for sigma in (0.02, 0.1):
        errs = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            noisy = truth(n) * np.exp(sigma * rng.standard_normal(n.size))
            model = fit_level_model(n, noisy)
            assert 0.05 <= model.alpha <= 2.0 and model.a >= 0 and model.b >= 0
            errs.append(np.max(np.abs(model(grid) / truth(grid) - 1)))
        worst[sigma] = max(errs)
    assert worst[0.02] < 0.03  # the curve is recovered to about the noise level
    assert worst[0.1] < 0.15
    assert worst[0.02] < worst[0.1]


def test_fit_of_flat_data_is_a_floor_and_bad_input_is_rejected():
    n = np.array([10, 20, 40, 80])
    model = fit_level_model(n, np.full(4, 0.2))
    np.testing.assert_allclose(model(np.array([10, 1000])), 0.2, rtol=1e-6)
    with pytest.raises(ValueError, match="distinct"):
        fit_level_model([10, 10, 20], [0.3, 0.3, 0.2])
    with pytest.raises(ValueError, match="errors"):
        fit_level_model([10, 20, 40], [0.3, 0.0, 0.2])
    with pytest.raises(ValueError, match="n_samples"):
        fit_level_model([10, 20, 40], [0.3, 0.2])


def test_level_model_predicts_scalars_and_arrays():
    m = LevelModel(2.0, 0.5, 0.1)
    assert m(4) == pytest.approx(1.1) and isinstance(m(4), float)
    np.testing.assert_allclose(m.predict(np.array([1, 100])), [2.1, 0.3])
    assert m(0) == np.inf and LevelModel(0.0, 1.0, 0.2)(0) == 0.2


# ---- the estimate ------------------------------------------------------------------------------


def test_single_level_estimate_is_that_levels_model():
    for l, model in enumerate(MODELS):
        n = np.zeros(3)
        n[l] = 37
        assert estimate_final_error(MODELS, n) == pytest.approx(model(37))


def test_estimate_is_the_telescoping_sum_when_every_level_helps():
    n = np.array([400, 40, 4])
    m0, m1, m2 = MODELS
    want = (m2.b + m0.a * 400 ** -m0.alpha + (m0.b - m1.b) * m1.a * 40 ** -m1.alpha
            + (m1.b - m2.b) * m2.a * 4 ** -m2.alpha)
    assert estimate_final_error(MODELS, n) == pytest.approx(want)


def test_estimate_is_monotone_in_every_level_from_zero_on():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = rng.integers(0, 30, size=3)
        if not n.any():
            continue
        e = estimate_final_error(MODELS, n)
        for l in range(3):
            up = n.copy()
            up[l] += rng.integers(1, 5)
            assert estimate_final_error(MODELS, up) <= e + 1e-15
    assert estimate_final_error(MODELS, [0, 0, 0]) == np.inf


def test_curriculum_errors_end_at_the_final_estimate():
    n = np.array([200, 12, 3])
    run = curriculum_errors(MODELS, n)
    assert run[-1] == pytest.approx(estimate_final_error(MODELS, n))
    assert run[0] == pytest.approx(MODELS[0](200))
    assert np.all(np.diff(run) <= 1e-15)


# ---- the optimum ---------------------------------------------------------------------------------


def test_continuous_optimum_matches_the_closed_form():
    k = np.array([1.0, 0.05, 0.004])
    c = np.array([1.0, 4.0, 16.0])
    alpha, budget = 0.5, 1e5
    n = continuous_optimum(k, np.full(3, alpha), c, budget, lower=1.0)
    shape = (k / c) ** (1 / (1 + alpha))
    np.testing.assert_allclose(n, budget * shape / (shape @ c), rtol=1e-9)
    # with a binding lower bound the KKT solution keeps it and spends the rest
    n = continuous_optimum(np.array([1.0, 1e-9]), np.array([0.5, 0.5]), np.array([1.0, 1.0]),
                           100.0, lower=3.0)
    assert n[1] == 3.0 and n @ [1, 1] == pytest.approx(100.0)


def _brute_force(models, c, budget, m=0):
    """Best estimate over all integer allocations ``>= m`` (the cheapest level is filled with
    what is left, which is best because the estimate is monotone)."""
    best = np.inf
    for n2 in range(m, int((budget - m * (c[0] + c[1])) // c[2]) + 1):
        for n1 in range(m, int((budget - m * c[0] - n2 * c[2]) // c[1]) + 1):
            n0 = int((budget - n2 * c[2] - n1 * c[1]) // c[0] + 1e-9)
            if n0 == n1 == n2 == 0:
                continue
            best = min(best, estimate_final_error(models, [n0, n1, n2]))
    return best


@pytest.mark.parametrize("budget", [40.0, 150.0, 400.0])
def test_optimal_allocation_matches_brute_force_and_beats_the_baselines(budget):
    n = optimal_allocation(MODELS, COSTS, budget)
    est = estimate_final_error(MODELS, n)
    assert n.dtype.kind == "i"
    assert _cost(n, COSTS) <= budget * (1 + TOL)
    assert budget - _cost(n, COSTS) < COSTS.max()
    assert est <= _brute_force(MODELS, COSTS, budget) * 1.01
    rivals = [equal_split(COSTS, budget),
              mlmc_allocation(COSTS, [1.0, 0.05 ** 2, 0.026 ** 2], budget),
              mlmc_allocation(COSTS, [1.0, 1.0, 1.0], budget)]
    rivals += [np.eye(3, dtype=int)[l] * int(budget // COSTS[l]) for l in range(3)]
    for rival in rivals:
        assert est <= estimate_final_error(MODELS, rival) + 1e-12


def test_optimal_allocation_is_a_real_multilevel_plan_where_coarse_levels_are_cheap():
    n = optimal_allocation(MODELS, COSTS, 400.0)
    assert n[0] > 10 * n[2] > 0  # many cheap coarse samples, few dear fine ones
    fine_only = MODELS[2](int(400 // COSTS[2]))
    assert estimate_final_error(MODELS, n) < 0.7 * fine_only


def test_optimal_allocation_drops_a_level_whose_bias_is_too_big_to_help():
    models = [LevelModel(1.0, 0.5, 0.9), LevelModel(1.0, 0.5, 0.001)]  # coarse labels useless
    n = optimal_allocation(models, [1.0, 2.0], 100.0)
    np.testing.assert_array_equal(n, [0, 50])


def test_optimal_allocation_with_min_samples_matches_brute_force():
    budget, m = 150.0, 2
    n = optimal_allocation(MODELS, COSTS, budget, min_samples=m)
    assert np.all(n >= m) and _cost(n, COSTS) <= budget * (1 + TOL)
    assert estimate_final_error(MODELS, n) <= _brute_force(MODELS, COSTS, budget, m) * 1.01


def test_one_level_takes_the_whole_budget():
    n = optimal_allocation([LevelModel(1.0, 0.5, 0.01)], [3.0], 100.0)
    np.testing.assert_array_equal(n, [33])


@pytest.mark.parametrize("args, word", [
    ((MODELS, COSTS, -1.0), "budget"),
    ((MODELS, COSTS, 0.5), "cheapest"),
    ((MODELS, COSTS[:2], 100.0), "costs"),
    ((MODELS, [1.0, 0.0, 2.0], 100.0), "costs"),
    (([], [], 100.0), "models"),
])
def test_optimal_allocation_rejects_bad_input(args, word):
    with pytest.raises(ValueError, match=word):
        optimal_allocation(*args)


def test_estimate_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="n must have"):
        estimate_final_error(MODELS, [1, 2])


# ---- printing ---------------------------------------------------------------------------------


def test_plan_table_lists_every_level_and_a_total():
    n = np.array([204, 12, 3])
    lines = plan_table([32, 64, 128], COSTS, n, curriculum_errors(MODELS, n), budget=300.0)
    assert len(lines) == 2 + 3 + 2
    assert lines[2].split()[:4] == ["1", "32", "1", "204"]
    assert "68.0%" in lines[2] and "100.0%" in lines[-1]
    final = f"{estimate_final_error(MODELS, n):.4g}"
    assert lines[-1].split()[-1] == final and lines[-3].split()[-1] == final
    assert plan_table([32, 64, 128], COSTS, n, 0.1)[-1].split()[-1] == "0.1"
    with pytest.raises(ValueError, match="allocation"):
        plan_table([32, 64, 128], COSTS, n[:2])
