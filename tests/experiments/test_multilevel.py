"""``lemon-pl experiment multilevel``: its steps, and the tiny scale end to end (slow)."""

from __future__ import annotations

import os
import re

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
    n_pilots = {p: len(v["levels"]) * len(sc["pilot"]) + 1 for p, v in sc["problems"].items()}  # + the chain
    # per problem: 2 generate steps, the pilots' analysis, the pilot fits, the plan's analysis, fits and tests
    assert len(steps) == sum(4 + n_pilots[p] + 2 * n_fit for p in sc["problems"]) + 2 * n_variant
    for s in steps:
        if "fno_native" in s.id and s.command == "fit":  # a variant: its overlay, then the plan's
            configs = [s.argv[i + 1] for i, a in enumerate(s.argv) if a == "--config"]
            assert configs[-2].endswith("multilevel/fno_native.yaml")
    by_id = {s.id: s for s in steps}
    for p in sc["problems"]:
        pilots, plan = by_id[f"{p}_pilots"], by_id[f"{p}_plan"]
        assert pilots.analysis is not None and plan.analysis is not None  # analysis steps, no command
        assert pilots.needs == [f"{p}_generate_train", f"{p}_generate_eval"]
        fits = [s for s in steps if s.id.startswith(f"{p}_pilot_")]
        assert len(fits) == n_pilots[p] and plan.needs == [s.id for s in fits]
        for s in fits:  # ordinary fit steps: the pilot's overlay (samples and epochs), their summary declared
            assert s.command == "fit" and s.needs == [pilots.id] and "summary" in s.declared()
            assert any(a == f"{{overlay:{pilots.id}/{s.id[len(p) + 7:]}}}" for a in s.argv)
        assert set(plan.declared()) == {"plan"} | {f"overlay/{m}_b{b:g}" for m in
                                                   ("allocator", "mlmc", "equal", "fine_only", "coarse_only")
                                                   for b in sc["budgets"]}
    fits = [s for s in steps if s.command == "fit" and "_pilot_" not in s.id]
    for s in fits:
        assert "--data.init_args.preset" not in s.argv  # the multi-level data module has no preset
        configs = [s.argv[i + 1] for i, a in enumerate(s.argv) if a == "--config"]
        assert re.fullmatch(r"\{overlay:\w+_plan/\w+_b[0-9.e+]+\}", configs[-1])  # the plan's overlay wins
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
