"""``lemon-pl multilevel plan``: costs from the files, pilot fits, error models, overlays that compose."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from lemon_pl.cli import main
from lemon_pl.multilevel import allocate as al
from lemon_pl.multilevel.plan import allocations, epochs_for, level_costs, level_variances
from tests.conftest import CONFIGS

STAGE = str(CONFIGS / "multilevel/schrodinger.yaml")
TINY = str(CONFIGS / "multilevel/tiny.yaml")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    assert main(["generate", "--root", str(root), "--preset", "tiny", "--families", "schrodinger", "--levels",
                 "32,64", "--no-progress"]) == 0
    return root


def _two_levels(tmp_path, root):
    """An overlay for two levels (the stage config has four)."""
    path = tmp_path / "two.yaml"
    path.write_text("data:\n  init_args:\n    levels: [32, 64]\n    n_samples: [16, 8]\n    epochs: [1, 1]\n")
    return [STAGE, TINY, str(path)]


def test_epochs_are_shared_in_proportion_to_the_samples_of_the_levels_that_get_any():
    assert epochs_for([10, 0, 5, 0], 8) == [5, 0, 3, 0]  # one each, the other 6 split 10 : 5
    assert epochs_for([0, 0, 0, 3], 7) == [0, 0, 0, 7]
    assert epochs_for([1000, 1, 1], 10) == [8, 1, 1]  # a tiny level still trains, briefly
    for n in ([1, 2, 3], [7, 0, 1], [5, 5, 5, 5]):
        assert sum(epochs_for(n, 10)) == 10


def test_the_calibrated_scale_reproduces_the_curriculum_pilot():
    from lemon_pl.multilevel.plan import calibrate_scale

    models = [al.LevelModel(1.0, 0.8, 0.05), al.LevelModel(2.0, 0.7, 0.01)]
    for measured in (0.03, 0.06, 0.2):
        w, scale = calibrate_scale(models, (512, 32), measured)
        if w < 1:  # inside the estimator's range the calibrated estimate equals the measurement
            assert al.estimate_final_error(models, [512, 32], scale) == pytest.approx(
                min(measured, al.estimate_final_error(models, [512, 0], scale)))


def test_allocations_keep_the_budget_and_the_allocator_is_the_estimate_optimum():
    models = [al.LevelModel(1.0, 0.8, 0.05), al.LevelModel(1.0, 0.8, 0.01)]
    costs, budget = [1.0, 8.0], 400.0
    plans = allocations(models, costs, [1.0, 0.01], budget, [10**6, 10**6])
    for name, n in plans.items():
        assert np.dot(n, costs) <= budget + 1e-9, name
    assert plans["fine_only"].tolist() == [0, 50] and plans["coarse_only"].tolist() == [400, 0]
    best = al.estimate_final_error(models, plans["allocator"])
    # brute force over every affordable integer plan
    grid = [(a, b) for b in range(51) for a in range(int((budget - 8 * b) // 1) + 1) if a or b]
    brute = min(al.estimate_final_error(models, [a, b]) for a, b in grid[::7] + [tuple(plans["fine_only"])])
    assert best <= brute + 1e-12
    with pytest.raises(ValueError, match="below the cost of one finest sample"):
        allocations(models, costs, [1.0, 0.01], 4.0, [10, 10])


def test_costs_and_variances_are_read_from_the_level_files(root):
    d = {"root": str(root), "family": "schrodinger", "levels": [32, 64], "interpolation": None, "output_frame": -1}
    costs, sizes = level_costs(d)
    import h5py

    with h5py.File(root / "n64" / "schrodinger" / "train.h5", "r") as f:
        assert costs[1] == f.attrs["seconds_per_sample"] and sizes[1] == f.attrs["n_samples"]
    v = level_variances(d)
    assert v[0] == pytest.approx(1.0, rel=0.05)  # ground states are normalised: mean u^2 = 1 on every grid
    assert 0 < v[1] < 0.01  # the 64-point correction is small next to the map


@pytest.mark.slow
def test_plan_runs_pilots_and_writes_overlays_that_compose(root, tmp_path, capsys):
    configs = _two_levels(tmp_path, root)
    argv = ["multilevel", "plan", *[x for c in configs for x in ("--config", c)], "--root", str(root),
            "--budget", "4,8", "--budget-unit", "fine", "--pilot", "4,8,16", "--pilot-dir", str(tmp_path / "pilots"),
            "--out-dir", str(tmp_path / "plans")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "the allocator's plan" in out and "e(N) =" in out
    plan = json.loads((tmp_path / "plans" / "plan.json").read_text())
    assert len(plan["pilots"]["1"]) == 3 and len(plan["models"]) == 2
    ch = plan["chain_pilot"]  # the curriculum pilot: coarsest level's largest count, finest level's middle one
    assert ch["n_samples"] == [16, 8] and ch["scale"] > 0 and 1e-3 <= ch["weight"] <= 1e3
    c = plan["seconds_per_sample"]
    for label, entry in plan["budgets"].items():
        for method, v in entry.items():
            assert v["spent"] <= v["budget_seconds"] * (1 + 1e-9), method
            assert v["budget_seconds"] == pytest.approx(float(label) * c[-1])
            overlay = yaml.safe_load((tmp_path / "plans" / f"{method}_b{label}.yaml").read_text())
            assert overlay["data"]["init_args"]["n_samples"] == v["n_samples"]
    # a re-run reuses the pilot fits (no new run folders) and gives the same plan
    before = sorted(p.name for p in (tmp_path / "pilots").iterdir())
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "pilots").iterdir()) == before
    assert json.loads((tmp_path / "plans" / "plan.json").read_text())["budgets"] == plan["budgets"]
    # the overlay is a valid second --config of the stage
    cfg_out = tmp_path / "cfg"
    assert main(["fit", *[x for c in configs for x in ("--config", c)], "--config",
                 str(tmp_path / "plans" / "allocator_b8.yaml"), "--data.init_args.root", str(root),
                 "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(cfg_out)]) == 0


@pytest.mark.parametrize("extra,needle", [(["--budget", "x"], "comma-separated numbers"),
                                          (["--budget", "-1"], "must be positive"),
                                          (["--budget", "1", "--root", "/nonexistent/r"], "does not exist"),
                                          (["--budget", "1e-9"], "below the cost")])
def test_plan_errors_are_one_line(root, tmp_path, capsys, extra, needle):
    configs = [x for c in _two_levels(tmp_path, root) for x in ("--config", c)]
    root_arg = [] if "--root" in extra else ["--root", str(root)]
    args = ["multilevel", "plan", *configs, *root_arg, "--pilot-dir", str(tmp_path / "p"), *extra]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("lemon-pl multilevel: error:") and needle in err[-1]


def test_the_pilot_fits_run_through_the_entry_point_given(root, tmp_path):
    """The planner imports no CLI: its pilot fits are `lemon-pl fit` argvs run by the entry point it is
    given (lemon-pl passes its in-process main, the experiment steps' entry). A stand-in entry writes
    each pilot's summary: e(N) = b + a N^-1/2 per level, so the fitted models come back."""
    from lemon_pl.cli.multilevel import make_plan
    from lemon_pl.multilevel.plan import pilot_argv

    calls = []

    def entry(argv):
        calls.append(list(argv))
        name = argv[argv.index("--trainer.logger.init_args.name") + 1]
        n = json.loads(argv[argv.index("--data.init_args.n_samples") + 1])
        level = max(range(len(n)), key=lambda l: (n[l] > 0, l))
        err = (0.05, 0.01)[level] + 0.5 * n[level] ** -0.5
        folder = tmp_path / "pilots" / name / "version_0"
        folder.mkdir(parents=True)
        (folder / "fit_summary.json").write_text(json.dumps({"level_val_rel_l2": {"2": err}}))
        return 0

    configs = _two_levels(tmp_path, root)
    plan = make_plan(configs, [8.0], [4, 8, 16], tmp_path / "pilots", root=str(root), unit="fine", entry=entry,
                     log=lambda m: None)
    names = [c[c.index("--trainer.logger.init_args.name") + 1] for c in calls]
    assert names == [f"level{l}_n{g}_N{n}_s0" for l, g in ((1, 32), (2, 64)) for n in (4, 8, 16)] + ["chain_N16_N8_s0"]
    d = {"root": str(root), "epochs": [1, 1], "levels": [32, 64]}
    assert calls[0] == pilot_argv(configs, d, [4, 0], names[0], tmp_path / "pilots", 0)
    assert calls[0][calls[0].index("--data.init_args.epochs") + 1] == "[2,0]"  # the config's 2 epochs, one level
    assert plan["models"][1]["b"] == pytest.approx(0.01, abs=1e-3) and plan["models"][1]["alpha"] == pytest.approx(0.5, abs=0.02)
    # a second plan reuses every finished pilot: the entry is not called again
    calls.clear()
    assert make_plan(configs, [8.0], [4, 8, 16], tmp_path / "pilots", root=str(root), unit="fine", entry=entry,
                     log=lambda m: None)["budgets"] == plan["budgets"]
    assert calls == []
