"""The collocation data module: the release's point sets, seeded, disjoint, shared by every μ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lemon_pl.pinn.collocation import CollocationDataModule, mu_table
from lemon_pl.pinn.problems import ConvectionDiffusionReaction

HELMHOLTZ = {"class_path": "lemon_pl.pinn.problems.Helmholtz2D"}


def test_release_point_sets_on_the_256_by_100_grid():
    dm = CollocationDataModule(preset="table2_convection")
    b = dm.build()
    assert dm.mu_values == [[float(beta), 0.0, 0.0] for beta in range(30, 41)]
    assert dm.in_dim == 2 and dm.mu_dim == 3 and dm.out_dim == 1 and dm.problem.ic == "1+sin"
    assert list(b["points"]) == ["residual", "ic", "bc"] and list(b["targets"]) == ["ic"]
    x_f, x_ic, u_ic = b["points"]["residual"], b["points"]["ic"], b["targets"]["ic"]
    x_bc_a, x_bc_b = b["points"]["bc"], b["pairs"]["bc"]
    assert x_f.shape == (1000, 2) and b["x_test"].shape == (1000, 2)
    assert x_ic.shape == (256, 2) and u_ic.shape == (11, 256)
    assert x_bc_a.shape == (100, 2) and x_bc_b.shape == (100, 2)
    x, t = dm.axes()
    # interior nodes only: x > 0 on the grid (endpoint excluded), t > 0
    for pts in (x_f, b["x_test"]):
        assert (pts[:, 0] > 0).all() and (pts[:, 1] > 0).all()
        assert np.isin(pts[:, 0], x).all() and np.isin(pts[:, 1], t).all()
    # disjoint collocation and test points
    f = {tuple(p) for p in x_f}
    assert len(f) == 1000 and not f & {tuple(p) for p in b["x_test"]}
    # IC at t = 0 with the IC's values; periodic pairs at x = 0 and x = 2 pi at the same times
    assert (x_ic[:, 1] == 0).all()
    np.testing.assert_allclose(u_ic[3], 1 + np.sin(x_ic[:, 0]))
    assert (x_bc_a[:, 0] == 0).all() and np.allclose(x_bc_b[:, 0], 2 * math.pi)
    np.testing.assert_array_equal(x_bc_a[:, 1], x_bc_b[:, 1])


def test_test_values_are_the_exact_solution_at_the_test_points():
    dm = CollocationDataModule(mu=[[30, 0, 0], [3, 0, 2]], n_collocation=50, n_test=40)
    b = dm.build()
    for i, mu in enumerate(dm.mu_values):
        exact = dm.pde.reference_fn(mu)(torch.as_tensor(b["x_test"])).numpy()
        np.testing.assert_allclose(b["u_test"][i], exact, atol=1e-12)


def test_points_are_seeded_and_the_same_for_every_mu():
    a = CollocationDataModule(mu=[[1, 0, 0]], seed=3).build()
    b = CollocationDataModule(mu=[[1, 0, 0], [5, 1, 2]], seed=3).build()
    c = CollocationDataModule(mu=[[1, 0, 0]], seed=4).build()
    np.testing.assert_array_equal(a["points"]["residual"], b["points"]["residual"])
    np.testing.assert_array_equal(a["x_test"], b["x_test"])
    assert not np.array_equal(a["points"]["residual"], c["points"]["residual"])


def test_mu_sets_from_ranges_and_their_errors():
    pde = ConvectionDiffusionReaction()
    assert mu_table(pde, mu_ranges={"beta": [1, 3, 1], "rho": [2]}) == [[1, 0, 2], [2, 0, 2], [3, 0, 2]]
    assert len(mu_table(pde, mu_ranges={"beta": [1, 5, 1], "nu": [1, 5, 1], "rho": [1, 5, 1]})) == 125
    with pytest.raises(ValueError, match="unknown parameters"):
        mu_table(pde, mu_ranges={"gamma": [1]})
    with pytest.raises(ValueError, match="each value needs 3"):
        mu_table(pde, mu=[1, 2])
    with pytest.raises(ValueError, match="exactly one"):
        CollocationDataModule(mu=[1, 0, 0], preset="table2_convection")
    with pytest.raises(ValueError, match="nu must be >= 0"):
        CollocationDataModule(mu=[1, -1, 0])
    with pytest.raises(ValueError, match="data.init_args.problem: give {class_path"):
        CollocationDataModule(problem="navier")
    with pytest.raises(ValueError, match="data.init_args.problem.class_path: cannot import"):
        CollocationDataModule(problem={"class_path": "lemon_pl.pinn.problems.Navier"})
    with pytest.raises(ValueError, match="has no presets"):
        CollocationDataModule(problem=HELMHOLTZ, preset="table2_convection")
    with pytest.raises(ValueError, match="exceeds"):
        CollocationDataModule(mu=[1, 0, 0], n_grid=[8, 5], n_collocation=20, n_test=20)


def test_helmholtz_dirichlet_points_carry_the_exact_boundary_values():
    dm = CollocationDataModule(problem=HELMHOLTZ, mu=[[2.5, 2.5], [2.0, 3.0]], n_grid=[41, 41], n_bc=80,
                               n_collocation=200, n_test=100)
    b = dm.build()
    x_bd, u_bd = b["points"]["bc"], b["targets"]["bc"]
    assert list(b["points"]) == ["residual", "bc"] and x_bd.shape == (80, 2) and dm.mu_dim == 2
    on_edge = (np.abs(np.abs(x_bd) - 1) < 1e-12).any(axis=1)
    assert on_edge.all()
    np.testing.assert_allclose(u_bd[0], np.sin(2.5 * np.pi * x_bd[:, 0]) * np.sin(2.5 * np.pi * x_bd[:, 1]),
                               atol=1e-12)
    assert (np.abs(b["points"]["residual"]) < 1).all()  # interior


def test_an_epoch_repeats_the_full_batch():
    dm = CollocationDataModule(mu=[[1, 0, 0]], n_collocation=30, n_test=10, steps_per_epoch=3)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(torch.equal(x["points"]["residual"], batches[0]["points"]["residual"])
                                     for x in batches)
    assert batches[0]["points"]["residual"].dtype == torch.float32
    (val,) = list(dm.val_dataloader())
    assert set(val) == {"mu", "x_test", "u_test"}


def test_a_preset_fixes_its_initial_condition_over_the_configured_one():
    """Table 4's presets are defined with the gauss_pi_2 IC: a config whose problem says 1+sin
    gets the preset's IC (and its references), never 1+sin with Table 4's parameters."""
    configured = {"class_path": "lemon_pl.pinn.problems.ConvectionDiffusionReaction", "init_args": {"ic": "1+sin"}}
    dm = CollocationDataModule(problem=configured, preset="table4_convection", n_grid=[16, 5], n_collocation=10,
                               n_ic=16, n_bc=5, n_test=10)
    assert dm.problem.ic == "gauss_pi_2" and len(dm.mu_values) == 5
    x = np.linspace(0, 2 * math.pi, 7)
    assert np.array_equal(dm.problem.initial_condition(x), ConvectionDiffusionReaction("gauss_pi_2").initial_condition(x))
    same = CollocationDataModule(problem=configured, preset="table2_convection", n_grid=[16, 5], n_collocation=10,
                                 n_ic=16, n_bc=5, n_test=10)
    assert same.problem.ic == "1+sin" and len(same.mu_values) == 11
