"""The pieces of a physics-informed problem: samplers per region (counts, seeds, Latin-hypercube
strata, the right places), flux conditions through derivatives, periodic pairs, vector fields and
the selection of μ rows of a batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lemon_pl.pinn.collocation import CollocationDataModule, select_mu
from lemon_pl.pinn.conditions import (Condition, boundary, edge, flux, initial, interior, periodic, residual,
                                      value)
from lemon_pl.pinn.derivatives import laplacian
from lemon_pl.pinn.networks import PINN
from lemon_pl.pinn.problems import ConvectionDiffusionReaction, Domain, Param, Problem
from lemon_pl.pinn.sampling import grid_sample, interior_nodes, lhs, lhs_sample
from lemon_pl.pinn.stages import PINNModule

BOX3 = Domain(("x", "y", "t"), ((0.0, 1.0), (-1.0, 2.0), (0.0, 0.5)), (False, True, False), time="t")


# --------------------------------------------------------------------------- samplers


def test_latin_hypercube_puts_one_point_in_each_stratum_of_every_axis_and_is_seeded():
    pts = lhs(np.random.default_rng(3), 50, [0.0, -1.0, 0.0], [1.0, 2.0, 0.5])
    assert pts.shape == (50, 3)
    for i, (lo, hi) in enumerate(BOX3.bounds):
        strata = np.floor((pts[:, i] - lo) / (hi - lo) * 50).astype(int)
        assert sorted(strata) == list(range(50))  # each of the 50 strata exactly once
    np.testing.assert_array_equal(pts, lhs(np.random.default_rng(3), 50, [0.0, -1.0, 0.0], [1.0, 2.0, 0.5]))
    assert not np.array_equal(pts, lhs(np.random.default_rng(4), 50, [0.0, -1.0, 0.0], [1.0, 2.0, 0.5]))


@pytest.mark.parametrize("method", ["grid", "lhs"])
def test_each_region_sampler_puts_its_points_on_its_region_in_three_dimensions(method):
    axes = BOX3.grid([6, 5, 4])

    def sample(region, n, seed=0):
        rng = np.random.default_rng(seed)
        return grid_sample(region, BOX3, axes, n, rng) if method == "grid" else lhs_sample(region, BOX3, n, rng)

    ic = sample(initial(), 12)
    assert ic.points.shape == (12, 3) and (ic.points[:, 2] == 0).all()
    bd = sample(boundary(), 20)  # x is the only closed space axis (y is periodic); every time
    assert bd.points.shape == (20, 3) and np.isin(bd.points[:, 0], [0.0, 1.0]).all()
    assert bd.points[:, 2].max() > 0.25 and ((bd.points[:, 2] > 0) & (bd.points[:, 2] < 0.5)).any()
    np.testing.assert_array_equal(bd.normals[:, 0], np.where(bd.points[:, 0] == 0, -1.0, 1.0))
    assert (bd.normals[:, 1:] == 0).all()
    hi = sample(edge("x", "high"), 9)
    assert (hi.points[:, 0] == 1).all() and (hi.normals == [1.0, 0.0, 0.0]).all()
    pp = sample(periodic("y"), 10)
    assert (pp.points[:, 1] == -1).all() and (pp.pairs[:, 1] == 2).all()
    np.testing.assert_array_equal(pp.points[:, [0, 2]], pp.pairs[:, [0, 2]])
    again = sample(boundary(), 20)
    np.testing.assert_array_equal(bd.points, again.points)  # seeded
    if method == "lhs":
        inner = sample(interior(), 30).points
        assert inner.shape == (30, 3) and (inner.min(0) >= [0, -1, 0]).all() and (inner.max(0) <= [1, 2, 0.5]).all()
    else:  # a region smaller than the request gives all its nodes, once each
        everything = sample(initial(), 1000).points
        assert len(everything) == 6 * 5 and len(np.unique(everything, axis=0)) == 30


def test_grid_interior_nodes_leave_out_the_boundary_and_the_initial_time():
    nodes = interior_nodes(BOX3, [6, 5, 4])
    assert len(nodes) == 4 * 4 * 3  # x: 1..4 (closed), y: 1..4 (periodic, x=low excluded), t: 1..3
    assert nodes[:, 0].min() == 1 and nodes[:, 0].max() == 4 and nodes[:, 2].min() == 1 and nodes[:, 2].max() == 3


def test_conditions_refuse_what_makes_no_sense():
    with pytest.raises(ValueError, match="needs a target"):
        Condition(boundary(), "value")
    with pytest.raises(ValueError, match="periodic region"):
        Condition(periodic("x"), "value", target=lambda mu, p: p[:, 0])
    with pytest.raises(ValueError, match="unknown region"):
        edge("x", "low").__class__("corner")
    with pytest.raises(ValueError, match="side"):
        edge("x", "middle")


# --------------------------------------------------------------------------- a vector problem


class Shear(Problem):
    """Two fields (u, v) on [0, 1]^2, steady: u = a sin(x) cosh(y), v = a x^2 y (Laplace u = 0, Laplace v = 2 a y)."""

    name = "shear"
    domain = Domain(("x", "y"), ((0.0, 1.0), (0.0, 1.0)))
    params = (Param("a", low=0.5, high=2.0, step=0.5, default=1.0),)
    fields = ("u", "v")
    default_grid = (9, 9)

    def conditions(self):
        return {"residual": residual(),
                "left_u": value(edge("x", "low"), lambda mu, p: self.solution(mu, p)[:, 0], components=["u"]),
                "right_flux": flux(edge("x", "high"), self.normal_flux, components=["u", "v"]),
                "traction": flux(edge("y", "high"), lambda mu, p: mu["a"] * p[:, 0] ** 2, components=["v"],
                                 operator=self.traction),
                "bottom": value(edge("y", "low"), self.solution)}

    @staticmethod
    def traction(u, coords, normal, mu):
        """n · ∇v on the top edge, written by hand from the gradient of the second component."""
        (g,) = torch.autograd.grad(u[:, 1].sum(), coords, create_graph=True)
        return (g * normal).sum(1)

    def normal_flux(self, mu, p):
        a = mu["a"]
        return np.stack([a * np.cos(p[:, 0]) * np.cosh(p[:, 1]), 2 * a * p[:, 0] * p[:, 1]], 1)  # d/dx on x = 1

    def residual(self, u, coords, mu=None):
        a = self.mu_columns(mu, len(coords))["a"]
        return torch.stack([laplacian(u[:, 0], coords), laplacian(u[:, 1], coords) - 2 * a * coords[:, 1]], 1)

    def solution(self, mu, points):
        a = self.mu(mu)["a"]
        x, y = points[:, 0], points[:, 1]
        return np.stack([a * np.sin(x) * np.cosh(y), a * x ** 2 * y], 1)


class Exact(nn.Module):
    """The exact (u, v) of :class:`Shear` (times ``scale`` in u) as a network of coords and μ rows."""

    uses_mu = True

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.scale = scale

    def forward(self, coords, mu=None, mu_index=None):
        a = mu[mu_index][:, 0] if mu_index is not None else mu[..., 0]
        x, y = coords[:, 0], coords[:, 1]
        return self.w * torch.stack([self.scale * a * torch.sin(x) * torch.cosh(y), a * x ** 2 * y], 1)


def shear_data(**kw) -> CollocationDataModule:
    return CollocationDataModule(problem={"class_path": "tests.pinn.test_conditions.Shear"}, mu=[[1.0], [2.0]],
                                 n_collocation=20, n_bc=7, n_test=10, **kw)


def test_a_vector_problem_has_per_component_targets_and_zero_loss_at_its_exact_solution():
    dm = shear_data()
    b = dm.build()
    assert dm.out_dim == 2 and dm.in_dim == 2
    assert b["targets"]["left_u"].shape == (2, 7) and b["targets"]["right_flux"].shape == (2, 7, 2)
    assert b["targets"]["bottom"].shape == (2, 7, 2) and b["u_test"].shape == (2, 10, 2)
    assert b["grid_ref"].shape == (2, 9, 9, 2)
    np.testing.assert_allclose(b["normals"]["right_flux"], [[1.0, 0.0]] * 7)
    m = PINNModule(Exact(), problem=dm.problem, mu_values=dm.mu_values)
    batch = dm.train_batch()
    terms = m.loss_terms(m.field(mu=batch["mu"]), batch)
    assert list(terms) == ["residual", "left_u", "right_flux", "traction", "bottom"]
    for name, v in terms.items():
        assert float(v.detach()) < 1e-9, (name, float(v.detach()))
    metrics = m.evaluate(dm.eval_batch())
    assert metrics["rel_l2"].shape == (2,) and float(metrics["rel_l2"].max()) < 1e-6


def test_flux_through_derivatives_matches_the_analytic_derivative_of_a_wrong_field():
    """u scaled by 1.5: the flux term is the mean square of 0.5 a cos(1) cosh(y) over the right edge's points
    and both μ (v is exact), computed here by hand; the value term on x = 0 stays zero (sin 0 = 0)."""
    dm = shear_data()
    m = PINNModule(Exact(scale=1.5), problem=dm.problem, mu_values=dm.mu_values)
    batch = dm.train_batch()
    terms = m.loss_terms(m.field(mu=batch["mu"]), batch)
    y = dm.build()["points"]["right_flux"][:, 1]
    expect = np.mean([np.concatenate([(0.5 * a * math.cos(1.0) * np.cosh(y)) ** 2, np.zeros_like(y)])
                      for a in (1.0, 2.0)])
    assert float(terms["right_flux"]) == pytest.approx(expect, rel=1e-5)
    assert float(terms["left_u"]) < 1e-12 and float(terms["traction"]) < 1e-9


def test_weights_by_condition_name_scale_their_terms_and_unknown_names_are_refused():
    dm = shear_data()
    batch = dm.train_batch()
    m1 = PINNModule(Exact(scale=1.5), problem=dm.problem, mu_values=dm.mu_values)
    m2 = PINNModule(Exact(scale=1.5), problem=dm.problem, mu_values=dm.mu_values, weights={"right_flux": 3.0})
    t1 = m1.loss_terms(m1.field(mu=batch["mu"]), batch)
    diff = m2.total_loss(t1) - m1.total_loss(t1)
    assert float(diff) == pytest.approx(2.0 * float(t1["right_flux"]), rel=1e-6)
    with pytest.raises(ValueError, match="model.init_args.weights: unknown conditions"):
        PINNModule(Exact(), problem=dm.problem, mu_values=dm.mu_values, weights={"ic": 1.0})


def test_a_vector_problem_trains_a_two_output_network_for_a_few_steps(tmp_path):
    from lightning.pytorch import Trainer

    torch.manual_seed(0)
    dm = shear_data(steps_per_epoch=3)
    from lemon_pl.pinn.networks import PINNP

    m = PINNModule(PINNP(in_dim=2, out_dim=dm.out_dim, mu_dim=1, width=8, hidden_layers=1), problem=dm.problem,
                   mu_values=dm.mu_values, lr=1e-2)
    Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0, accelerator="cpu",
            default_root_dir=tmp_path).fit(m, dm)
    assert m.global_step == 3


# --------------------------------------------------------------------------- periodic pairs, μ rows


class Ramp(nn.Module):
    """u = x + t (not periodic in x: u(2π, t) - u(0, t) = 2π), the same at every μ."""

    uses_mu = True

    def forward(self, coords, mu=None, mu_index=None):
        return (coords[:, 0] + coords[:, 1])[:, None]


class Wave(nn.Module):
    uses_mu = True

    def forward(self, coords, mu=None, mu_index=None):
        return (torch.sin(coords[:, 0]) + coords[:, 1])[:, None]


def test_periodic_pairs_compare_the_field_at_both_ends():
    dm = CollocationDataModule(mu=[[1, 0, 0], [2, 0, 0]], n_grid=[16, 9], n_collocation=20, n_ic=5, n_bc=6,
                               n_test=10)
    batch = dm.train_batch()
    for net, expect in ((Ramp(), (2 * math.pi) ** 2), (Wave(), 0.0)):
        m = PINNModule(net, problem=dm.problem, mu_values=dm.mu_values)
        terms = m.loss_terms(m.field(mu=batch["mu"]), batch)
        assert float(terms["bc"]) == pytest.approx(expect, abs=1e-5)


def test_select_mu_keeps_the_rows_of_mu_and_every_target_and_the_points():
    dm = CollocationDataModule(mu=[[1, 0, 0], [2, 0, 1], [3, 1, 0]], n_grid=[16, 9], n_collocation=20, n_ic=5,
                               n_bc=6, n_test=10)
    batch, ev = dm.train_batch(), dm.eval_batch()
    two = select_mu(batch, [2, 0])
    assert two["mu"].tolist() == [[3, 1, 0], [1, 0, 0]]
    assert torch.equal(two["targets"]["ic"], batch["targets"]["ic"][[2, 0]])
    assert two["points"] is batch["points"] and two["pairs"] is batch["pairs"]
    assert torch.equal(select_mu(ev, slice(1, 2))["u_test"], ev["u_test"][1:2])
    assert set(batch["mu"].shape) == {3} and batch["mu"].shape == (3, 3)  # the batch itself is untouched


def test_the_problem_is_one_object_from_the_data_to_the_stage_and_its_config_is_recorded():
    dm = CollocationDataModule(problem={"class_path": "lemon_pl.pinn.problems.ConvectionDiffusionReaction",
                                        "init_args": {"ic": "gauss"}}, mu=[[1, 0, 0]], n_grid=[16, 9],
                               n_collocation=20, n_test=10)
    m = PINNModule(PINN(), problem=dm.problem, mu_values=dm.mu_values)
    assert m.pde is dm.problem and isinstance(m.pde, ConvectionDiffusionReaction) and m.pde.ic == "gauss"
    assert m.hparams["problem"] == {"class_path": "lemon_pl.pinn.problems.cdr.ConvectionDiffusionReaction",
                                    "init_args": {"ic": "gauss"}}
    with pytest.raises(ValueError, match="model.init_args.problem"):
        PINNModule(PINN(), problem="cdr", mu_values=[[1, 0, 0]])


def test_the_lhs_sampler_of_the_data_module_draws_off_grid_points_on_each_region_seeded():
    kw = dict(mu=[[1, 0, 0]], n_grid=[16, 9], n_collocation=40, n_ic=12, n_bc=10, n_test=10, sampler="lhs")
    b = CollocationDataModule(**kw).build()
    x_f, x_ic, a, pair = b["points"]["residual"], b["points"]["ic"], b["points"]["bc"], b["pairs"]["bc"]
    assert x_f.shape == (40, 2) and x_ic.shape == (12, 2) and a.shape == pair.shape == (10, 2)
    for axis, n in ((0, 40), (1, 40)):  # one point per stratum of each axis of the interior box
        lo, hi = ((0, 2 * math.pi), (0, 1))[axis]
        assert sorted(np.floor((x_f[:, axis] - lo) / (hi - lo) * n).astype(int)) == list(range(n))
    assert (x_ic[:, 1] == 0).all() and (a[:, 0] == 0).all() and np.allclose(pair[:, 0], 2 * math.pi)
    np.testing.assert_allclose(b["targets"]["ic"][0], 1 + np.sin(x_ic[:, 0]))
    again = CollocationDataModule(**kw).build()
    np.testing.assert_array_equal(again["points"]["residual"], x_f)
    with pytest.raises(ValueError, match="data.init_args.sampler"):
        CollocationDataModule(**{**kw, "sampler": "sobol"})
    with pytest.raises(ValueError, match="data.init_args.points: unknown conditions"):
        CollocationDataModule(**{**kw, "points": {"edge": 3}})
    assert CollocationDataModule(**{**kw, "points": {"ic": 5}}).build()["points"]["ic"].shape == (5, 2)
