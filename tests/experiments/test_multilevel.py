"""``lemon-pl experiment multilevel``: its steps, and the tiny scale end to end (slow)."""

from __future__ import annotations

import os

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import build_steps
from tests.conftest import CONFIGS


@pytest.mark.parametrize("scale", ["tiny", "cpu", "paper"])
def test_steps_generate_plan_then_fit_and_test_every_method_budget_and_seed(scale):
    import yaml

    from lemon_pl.experiments.common import load_scale

    sc = load_scale(CONFIGS / "experiments/multilevel.yaml", scale)
    steps = build_steps("multilevel", scale, configs=CONFIGS)
    ids = [s.id for s in steps]
    n_fit = len(sc["budgets"]) * len(sc["methods"]) * len(sc["seeds"])
    n_variant = sum(len(v.get("problems", sc["problems"])) * len(v.get("budgets", sc["budgets"]))
                    * len(v.get("methods", sc["methods"])) * len(sc["seeds"]) for v in (sc.get("variants") or {}).values())
    assert len(steps) == len(sc["problems"]) * (3 + 2 * n_fit) + 2 * n_variant
    for s in steps:
        if "fno_native" in s.id and s.command == "fit":  # a variant: its overlay, then the plan's
            configs = [s.argv[i + 1] for i, a in enumerate(s.argv) if a == "--config"]
            assert configs[-2].endswith("multilevel/fno_native.yaml")
    for p in sc["problems"]:
        plan = ids.index(f"{p}_plan")
        assert ids.index(f"{p}_generate_train") < plan and ids.index(f"{p}_generate_eval") < plan
    fits = [s for s in steps if s.command == "fit"]
    for s in fits:
        assert "--data.init_args.preset" not in s.argv  # the multi-level data module has no preset
        configs = [s.argv[i + 1] for i, a in enumerate(s.argv) if a == "--config"]
        assert configs[-1].startswith("{exp_dir}/plans/") and configs[-1].endswith(".yaml")  # the plan wins
        assert s.needs and s.needs[0].endswith("_plan")
    tests = [s for s in steps if s.command == "test"]
    assert all(t.tags["condition"].startswith(t.tags["problem"]) for t in tests)
    assert yaml.safe_load((CONFIGS / "experiments/multilevel.yaml").read_text())["common"]["methods"][0] == "fine_only"


@pytest.mark.slow
def test_tiny_end_to_end_then_every_step_is_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["experiment", "multilevel", "--scale", "tiny", "--configs", str(CONFIGS), "--out", str(tmp_path / "res")]
    assert main(argv) == 0
    out = tmp_path / "res" / "multilevel" / "tiny"
    table = (out / "table.md").read_text()
    assert "Test relative L2 at equal generation budget" in table and "allocator" in table
    assert (out / "error_vs_budget.png").exists() and (out / "plans" / "schrodinger" / "plan.json").exists()
    capsys.readouterr()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert log.count(": skip (completed)") == len(build_steps("multilevel", "tiny", configs=CONFIGS))
    assert ": run\n" not in log
    assert os.path.exists(out / "results.csv")
