"""Issue 22: every numeric value of the physics-informed data module is checked before anything is
built - one `lemon-pl: error:` line naming the key, exit 2, no run folder, and no time or memory
spent (a 1e13-value μ range or a 1e10-node grid would be allocated otherwise)."""

from __future__ import annotations

import time

import lightning.pytorch  # noqa: F401 - its loggers bind to the real stderr, not to a test's capture
import pytest

from lemon_pl.cli import main
from tests.conftest import CONFIGS


@pytest.mark.parametrize("flags,expect", [
    (["--data.init_args.mu", "[nan,0,0]"], "data.init_args.mu on the command line: Expected a <class 'float'>. Got value: nan"),
    (["--data.init_args.mu", "[1e300,0,0]"], "data.init_args.mu: beta = 1e+300 (value 0) is not a finite number"),
    (["--data.init_args.mu", "[1,-1e7,0]"], "data.init_args.mu: nu = -10000000.0 (value 0) is not a finite number"),
    (["--data.init_args.mu", "null", "--data.init_args.mu_ranges", "{beta: [0, 40, 1e-12]}"],
     "data.init_args.mu_ranges.beta gives 40,000,000,000,001 μ values; a run has at most 10,000"),
    (["--data.init_args.mu", "null", "--data.init_args.mu_ranges", "{beta: [0, 40, 0.1], nu: [0, 5, 0.01], rho: [0, 5, 0.5]}"],
     "data.init_args.mu_ranges gives 2,209,911 μ values; a run has at most 10,000"),
    (["--data.init_args.mu", "null", "--data.init_args.mu_ranges", "{beta: [0, 1e300, 1]}"],
     "data.init_args.mu_ranges.beta must be a finite number from -1e+06 to 1e+06, got 1e+300"),
    (["--data.init_args.n_grid", "[100000, 100000]"], "needs about 223.5 GiB for its references (at most 8 GiB)"),
    (["--data.init_args.n_grid", "[1000000000, 100]"], "data.init_args.n_grid must be an integer from 3 to 100000, got 1000000000"),
    (["--data.init_args.n_grid", "[2, 100]"], "data.init_args.n_grid must be an integer from 3 to 100000, got 2"),
    (["--data.init_args.n_collocation", "-5"], "data.init_args.n_collocation must be an integer from 1 to 1e+07, got -5"),
    (["--data.init_args.n_bc", "100000000000"], "data.init_args.n_bc must be an integer from 0 to 1e+07"),
    (["--data.init_args.steps_per_epoch", "0"], "data.init_args.steps_per_epoch must be an integer from 1 to 1e+07, got 0"),
    (["--data.init_args.seed", "-1"], "data.init_args.seed must be an integer from 0 to"),
    (["--data.init_args.problem", "{class_path: lemon_pl.pinn.problems.Helmholtz2D, init_args: {k: 1e300}}",
      "--data.init_args.mu", "[2.5, 2.5]"], "data.init_args.problem.init_args.k must be a finite number from -1e+06 to 1e+06"),
    (["--data.init_args.problem.init_args", "{ic: gauss_pi_2, k: 2}"], "data.init_args.problem"),
])
def test_hostile_pinn_values_are_one_line_before_anything_is_built(flags, expect, tmp_path, capsys):
    start = time.perf_counter()
    code = main(["fit", "--config", str(CONFIGS / "pinn/pinn.yaml"), *flags,
                 "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    took = time.perf_counter() - start
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("  (lemon-pl fit --help")]
    assert code == 2 and len(err) == 1 and err[0].startswith("lemon-pl: error:"), err
    assert expect in err[0], err[0]
    assert not (tmp_path / "runs").exists()
    assert took < 20  # refused up front (the config parse itself takes a few seconds)
