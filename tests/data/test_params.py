"""The one parameter vocabulary (lemon_pl.data.params): the operator families draw and accept exactly what
they did before it existed, and it expresses the physics-informed problems' parameters (defaults, studied
grids, presets, the [-1, 1] scaling)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lemon_pl.data.families import get_family, list_families
from lemon_pl.data.generate import plan_params
from lemon_pl.data.params import ACCEPT_FACTOR, Param, ParamSpace, grid_values
from lemon_pl.data.symbols import round_sig

#: draws of every family recorded with the code before this module (ParamSpec and predict's param_range)
RECORDED = json.loads((Path(__file__).parent / "fixtures" / "param_draws.json").read_text())["families"]


def _hex(values):
    return [float(v).hex() for v in values]


@pytest.mark.parametrize("name", list_families())
def test_draws_plans_and_accepted_ranges_equal_the_recorded_ones(name):
    """The same rng calls in the same order: gamma-sampling, split planning and predict's ranges, bit for bit."""
    fam, want = get_family(name), RECORDED[name]
    rows = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        for gamma in (0.0, 0.1, 0.5, 0.9):
            for _ in range(4):
                rows.append(_hex(fam.sample_params(rng, gamma).values()))
    assert rows == want["draws"]
    planned = plan_params(fam, 10086, [("train", 6, 0.1), ("val", 3, 0.1), ("test", 3, 0.3)])
    assert {k: [_hex(r) for r in v[0]] + [v[1]] for k, v in planned.items()} == want["plan"]
    assert [_hex(p.accepted_range()) for p in fam.params] == want["ranges"]


def test_gamma_sampling_stays_in_its_range_and_widens_with_gamma():
    p = Param("nu", 3e-3)
    rng = np.random.default_rng(0)
    for gamma in (0.0, 0.1, 0.5):
        lo, hi = p.sampling_range(gamma)
        assert (lo, hi) == ((1 - gamma) * 3e-3, (1 + gamma) * 3e-3)
        draws = [p.sample(rng, gamma) for _ in range(200)]
        assert all(round_sig(lo) <= d <= round_sig(hi) for d in draws)
        assert all(d == round_sig(d) for d in draws)  # 3 significant digits: what the tokens say
    assert {Param("nu", 3e-3).sample(rng, 0.0) for _ in range(5)} == {3e-3}
    spread = [np.ptp([p.sample(rng, g) for _ in range(400)]) for g in (0.05, 0.5)]
    assert spread[1] > 5 * spread[0]
    # a negative centre keeps the order (1-gamma) q_c, (1+gamma) q_c of the draw: the same rng call
    assert Param("c", -2.0).sampling_range(0.5) == (-1.0, -3.0)
    assert Param("c", -2.0).box(0.5) == (-3.0, -1.0)
    # ranged and discrete parameters ignore gamma
    a, m = Param("a", low=0.0, high=1.0), Param("m", choices=(2, 3, 4))
    assert a.sampling_range(0.9) == (0.0, 1.0) and m.sampling_range(0.9) == (2.0, 4.0)
    assert {m.sample(rng, 0.9) for _ in range(100)} == {2.0, 3.0, 4.0}
    unrounded = Param("a", low=0.0, high=1.0, round_draws=False).sample(np.random.default_rng(1))
    assert unrounded == np.random.default_rng(1).uniform(0.0, 1.0)


def test_accepted_ranges_are_predicts():
    assert Param("delta", 0.022).accepted_range() == pytest.approx((0.022 / ACCEPT_FACTOR, 0.022 * ACCEPT_FACTOR))
    assert Param("c", -2.0).accepted_range() == (-200.0, -0.02)
    assert Param("a", low=0.0, high=1.0).accepted_range() == (0.0, 1.0)
    m = Param("m", choices=(2, 3, 4))
    assert m.accepted_range() == (2.0, 3.0, 4.0) and m.describe_range() == "one of 2, 3, 4"
    assert m.contains(3.0) and not m.contains(2.5) and not Param("a", low=0.0, high=1.0).contains(float("nan"))
    assert Param("delta", 0.022).describe_range() == "0.00022 .. 2.2"
    assert Param("delta", 0.022).default_value == 0.022 and m.default_value == 2.0
    assert Param("a", low=0.0, high=1.0).start() == (0.5, 1.0)


def test_the_physics_informed_parameters_are_expressible():
    """Param(name, default, low, high, step) of the physics-informed problems: the same defaults and the
    same studied values as their own ``values()`` (n = round((high - low) / step) + 1 values, 12 decimals)."""
    for name, default, low, high, step in (("beta", 1.0, 0.0, 40.0, 1.0), ("nu", 1.0, 0.0, 5.0, 1.0),
                                           ("a1", 2.5, 2.0, 3.0, 0.1)):
        p = Param(name, low=low, high=high, step=step, default=default)
        n = int(round((high - low) / step)) + 1
        np.testing.assert_array_equal(p.values(), np.round(low + step * np.arange(n), 12))
        assert p.default_value == default
    assert Param("a1", low=2.0, high=3.0, step=0.1).values()[-1] == 3.0  # the end reached despite round-off
    # mu_ranges [low, high, step] of the physics-informed data module round to 10 decimals
    np.testing.assert_array_equal(grid_values(0.0, 1.0, 0.1, decimals=10), np.round(0.1 * np.arange(11), 10))


def test_presets_are_cartesian_products_and_the_grid_of_the_studied_values():
    cdr = ParamSpace((Param("beta", low=0.0, high=40.0, step=1.0, default=1.0),
                      Param("nu", low=0.0, high=5.0, step=1.0, default=1.0),
                      Param("rho", low=0.0, high=5.0, step=1.0, default=1.0)),
                     presets={"table4_reaction": ((0,), (0,), tuple(range(1, 6))),
                              "table4_cdr": (tuple(range(1, 6)),) * 3})
    want = np.array(list(itertools.product((0,), (0,), range(1, 6))), dtype=np.float64)
    np.testing.assert_array_equal(cdr.preset("table4_reaction"), want)
    assert cdr.preset("table4_cdr").shape == (125, 3)
    assert cdr.grid().shape == (41 * 6 * 6, 3) and cdr.defaults() == {"beta": 1.0, "nu": 1.0, "rho": 1.0}
    assert cdr["nu"].high == 5.0 and cdr[0].name == "beta" and len(cdr) == 3 and cdr.names == ("beta", "nu", "rho")
    np.testing.assert_array_equal(cdr.row({"rho": 3, "beta": 1, "nu": 2}), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown preset"):
        cdr.preset("nope")
    with pytest.raises(KeyError, match="no parameter 'k'"):
        cdr["k"]


def test_scaling_maps_the_box_onto_minus_one_one():
    space = ParamSpace((Param("a1", low=2.0, high=3.0, step=0.1), Param("fixed", low=4.0, high=4.0),
                        Param("nu", 3e-3)))
    rows = np.array([[2.0, 4.0, 0.9 * 3e-3], [3.0, 4.0, 1.1 * 3e-3], [2.5, 4.0, 3e-3]])
    np.testing.assert_allclose(space.to_unit(rows), [[-1, 0, -1], [1, 0, 1], [0, 0, 0]], atol=1e-12)
    assert space[1].unit_affine() == (4.0, 1.0)  # a one-point box is only shifted


def test_a_family_space_is_its_parameters():
    fam = get_family("diff_bistablereact_1D")
    assert fam.space.names == fam.param_names and tuple(fam.space) == fam.params
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert fam.sample_params(rng1, 0.3) == {p.name: p.sample(rng2, 0.3) for p in fam.params}


@pytest.mark.parametrize("kwargs, match", [({}, "exactly one"), ({"centre": 1.0, "choices": (1, 2)}, "exactly one"),
                                           ({"low": 1.0}, "both low and high"), ({"low": 2.0, "high": 1.0}, "above"),
                                           ({"centre": 1.0, "step": 0.1}, "step"),
                                           ({"low": 0.0, "high": 1.0, "step": 0.0}, "step")])
def test_an_ill_formed_parameter_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Param("p", **kwargs)


def test_the_map_families_settings_in_the_same_vocabulary():
    from lemon_pl.multilevel.families import MAP_FAMILIES

    space = MAP_FAMILIES["rough_elliptic"].space
    assert space["jump_range"].box() == (0.25, 0.75) and space["jump"].default_value == 10.0
    assert space["corr_length"].accepted_range() == (0.1, 0.1)
    waves = MAP_FAMILIES["schrodinger_osc"].space["osc_wavenumbers"]
    np.testing.assert_array_equal(waves.values(), np.arange(8, 33))
