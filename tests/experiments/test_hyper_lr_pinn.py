"""The hyper-lr-pinn experiment: its step graph, and the tiny scale end to end (slow)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import build_steps

REPO = Path(__file__).resolve().parents[2]


def test_every_method_of_table_2_runs_at_every_target_and_phase_2_starts_from_phase_1():
    steps = build_steps("hyper-lr-pinn", "cpu")
    tests = [s for s in steps if s.command == "test"]
    t2 = [s for s in tests if s.tags.get("section") == "Table 2"]
    methods = {s.tags["method"] for s in t2}
    assert {"PINN", "Naive-LR-PINN r=10", "Naive-LR-PINN r=50", "Curriculum r=50", "MAML r=50", "Reptile r=50",
            "Hyper-LR-PINN full rank", "Hyper-LR-PINN adaptive rank"} <= methods
    for m in methods:
        for seed in (0, 1, 2):
            assert sorted(s.tags["x"] for s in t2 if s.tags["method"] == m and s.tags["seed"] == seed) == [30, 35, 40], m
    by_id = {s.id: s for s in steps}
    for s in steps:
        if s.id.startswith("t2_phase2_full") and s.command == "fit":
            src = s.argv[s.argv.index("--model.init_args.init_from") + 1]
            assert src == "{ckpt:t2_phase1_s%s}" % s.id.rsplit("_s", 1)[1] and s.needs == [src[6:-1]]
        if s.id.startswith("t2_curriculum") and "_b10_" not in s.id and s.command == "fit":  # warm starts from the previous beta
            assert "--model.init_args.init_from" in s.argv
    assert {s.tags["pde"] for s in tests if s.tags.get("section") == "Table 4"} == {"convection", "reaction", "cdr"}
    assert all(by_id[s.tags["fit"]].command == "fit" for s in tests)


@pytest.mark.slow
def test_tiny_end_to_end_then_every_step_is_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEMON_CONFIGS", str(REPO / "configs"))
    argv = ["experiment", "hyper-lr-pinn", "--scale", "tiny", "--out", "res"]
    assert main(argv) == 0
    out = tmp_path / "res/hyper-lr-pinn/tiny"
    for name in ("table.md", "results.csv", "hyper_lr_pinn.png", "many_query.png", "examples.png"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "table.md").read_text()
    for section in ("## Table 2", "## Table 4", "## Many-query", "## Cost", "## Helmholtz"):
        assert section in text, section
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {"rel_l2_mean", "mae_mean", "max_err_mean", "explained_variance_mean"} <= set(rows[0])
    capsys.readouterr()
    assert main(argv) == 0
    assert ": run" not in capsys.readouterr().out


def test_the_deviations_config_builds_labelled_rows_whose_steps_parse():
    import io
    from contextlib import redirect_stdout

    steps = build_steps("hyper-lr-pinn", "cpu", config=REPO / "configs/experiments/hyper_lr_pinn_deviations.yaml")
    methods = {s.tags["method"] for s in steps if s.command == "test" and s.tags.get("section") == "Table 2"}
    assert methods == {"Hyper-LR-PINN full rank", "Hyper-LR-PINN adaptive rank",
                       "Hyper-LR-PINN, squared penalty w=1 full rank",
                       "Hyper-LR-PINN, L-BFGS both phases, 100 steps full rank"}
    lbfgs = next(s for s in steps if s.id == "t2_phase1_dev2_s0")
    buf = io.StringIO()
    with redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        main([*lbfgs.argv, "--print_config"])
    assert exit_.value.code in (0, None) and "class_path: torch.optim.LBFGS" in buf.getvalue()
    assert "max_steps: 100" in buf.getvalue()
