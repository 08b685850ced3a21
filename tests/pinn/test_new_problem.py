"""README's claim, checked: a new physics-informed problem is one small class, defined here and
trained through ``lemon-pl fit`` / ``test`` with no edit of the package.

The problem is the 1-D heat equation u_t = k u_xx on [0, 1] x [0, 1] with the exact solution
u = exp(-k t) (cos x + sin x), whose values on both edges change in time (Dirichlet data
u(0, t) = exp(-k t), u(1, t) = exp(-k t) (cos 1 + sin 1)), and u(x, 0) = cos x + sin x."""

from __future__ import annotations

import csv
import json

import numpy as np

from lemon_pl.cli import main
from lemon_pl.pinn.conditions import boundary, initial, residual, value
from lemon_pl.pinn.derivatives import grad, partial
from lemon_pl.pinn.problems import Domain, Param, Problem
from tests.conftest import CONFIGS


class Heat1D(Problem):
    """u_t = k u_xx on [0, 1] x [0, 1]; Dirichlet data and the IC from the exact solution."""

    name = "heat"
    domain = Domain(("x", "t"), ((0.0, 1.0), (0.0, 1.0)), time="t")
    params = (Param("k", low=0.1, high=1.0, step=0.1, default=0.5),)
    default_grid = (33, 21)

    def conditions(self):
        return {"residual": residual(), "ic": value(initial(), self.solution), "bc": value(boundary(), self.solution)}

    def residual(self, u, coords, mu=None):
        g = grad(u, coords)
        return g[:, 1] - self.mu_columns(mu, len(coords))["k"] * partial(g[:, 0], coords, 0)

    def solution(self, mu, points):
        k = self.mu(mu)["k"]
        return np.exp(-k * points[:, 1]) * (np.cos(points[:, 0]) + np.sin(points[:, 0]))


CONFIG = """\
data:
  class_path: lemon_pl.pinn.collocation.CollocationDataModule
  init_args:
    problem: {class_path: tests.pinn.test_new_problem.Heat1D}
    mu: [0.5]
    n_grid: [33, 21]
    n_collocation: 200
    n_ic: 33
    n_bc: 40
    n_test: 200
    steps_per_epoch: 50
model:
  class_path: lemon_pl.pinn.stages.PINNModule
  init_args:
    net: {class_path: lemon_pl.pinn.networks.PINN, init_args: {width: 16, hidden_layers: 2}}
    lr: 0.01
seed_everything: 0
trainer:
  max_steps: 400
  check_val_every_n_epoch: 2
  log_every_n_steps: 10
  enable_progress_bar: false
  logger: {class_path: lightning.pytorch.loggers.CSVLogger, init_args: {name: heat}}
"""


def test_the_heat_equation_defined_here_samples_its_regions_on_the_right_places():
    from lemon_pl.pinn.collocation import CollocationDataModule

    dm = CollocationDataModule(problem={"class_path": "tests.pinn.test_new_problem.Heat1D"}, mu=[[0.5], [1.0]],
                               n_collocation=200, n_ic=33, n_bc=40, n_test=200)
    b = dm.build()
    x_ic, x_bc = b["points"]["ic"], b["points"]["bc"]
    assert (x_ic[:, 1] == 0).all() and len(x_ic) == 33  # the initial slice, every grid x
    assert len(x_bc) == 40 and set(np.unique(x_bc[:, 0])) == {0.0, 1.0}  # only the x-edges ...
    assert x_bc[:, 1].min() == 0.0 and 0 < np.median(x_bc[:, 1]) < 1  # ... at times across [0, T],
    assert (x_bc[:, 1] < 1).sum() > 30  # not pinned at t = T
    for i, k in enumerate((0.5, 1.0)):  # time-dependent Dirichlet data: the exact solution's values there
        exact = np.exp(-k * x_bc[:, 1]) * (np.cos(x_bc[:, 0]) + np.sin(x_bc[:, 0]))
        np.testing.assert_allclose(b["targets"]["bc"][i], exact, rtol=1e-15)
    assert np.ptp(b["targets"]["bc"][0][x_bc[:, 0] == 0]) > 0.3
    interior = b["points"]["residual"]
    assert ((interior[:, 0] > 0) & (interior[:, 0] < 1) & (interior[:, 1] > 0)).all()


def test_a_new_problem_defined_in_a_test_trains_through_lemon_pl_fit(tmp_path):
    config = tmp_path / "heat.yaml"
    config.write_text(CONFIG)
    common = ["--config", str(CONFIGS / "trainer/pinn.yaml"), "--config", str(CONFIGS / "callbacks/pinn.yaml"),
              "--config", str(config), "--trainer.logger.init_args.save_dir", str(tmp_path)]
    assert main(["fit", *common, "--trainer.check_val_every_n_epoch", "2"]) == 0
    run = tmp_path / "heat" / "version_0"
    with open(run / "metrics.csv") as fh:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert len(losses) >= 30 and losses[-1] < losses[0] / 100, (losses[0], losses[-1])
    assert main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]) == 0
    report = json.loads((tmp_path / "heat" / "version_1" / "test_metrics.json").read_text())
    assert report["group"] == "mu" and set(report["families"]) == {"k=0.5", "overall"}
    assert report["families"]["k=0.5"]["rel_l2"] < 0.01, report["families"]
