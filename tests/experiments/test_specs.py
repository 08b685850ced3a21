"""Every experiment config builds at every scale, and every kind of step it runs parses."""

from __future__ import annotations

import re
import io
from contextlib import redirect_stdout

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import EXPERIMENTS, SCALES, build_steps, config_file, load_scale


def kinds(steps):
    """One step per (command, stage config, model overlay): the distinct argument shapes."""
    seen = {}
    for s in steps:
        configs = tuple(a for i, a in enumerate(s.argv) if i and s.argv[i - 1] == "--config"
                        and not a.startswith("{"))  # per-step overlays an earlier step writes: one shape
        seen.setdefault((s.command, configs), s)
    return list(seen.values())


CASES = [pytest.param(n, s, marks=pytest.mark.slow) if s == "paper" or (n in ("hyper-lr-pinn", "multilevel") and s == "cpu")
         else (n, s) for s in SCALES for n in EXPERIMENTS]  # the same kinds of step as a faster scale: slow step


@pytest.mark.parametrize("name,scale", CASES)
def test_experiment_builds_and_its_steps_parse(name, scale):
    assert config_file(name).exists()
    steps = build_steps(name, scale)
    ids = [s.id for s in steps]
    assert len(ids) == len(set(ids))
    assert steps[0].command == ("fit" if name == "hyper-lr-pinn" else "generate")  # PINNs need no solver data
    sc = load_scale(config_file(name), scale)
    seeds = sc["seeds"]
    assert scale == "tiny" or len(seeds) >= 3, "results are mean ± std over at least 3 seeds"
    if scale == "paper":
        assert all(s.argv[s.argv.index("--preset") + 1] == "paper" for s in steps if s.command == "generate")
    tests = [s for s in steps if s.command == "test"]
    assert tests and all({"condition", "seed"} <= set(s.tags) for s in tests)
    for step in kinds(steps):
        if step.command not in ("fit", "test"):  # generate, analyses (the multi-level plan): no stage configs
            continue
        argv = list(step.argv)
        while any(a.startswith("{") and "--config" == argv[i - 1] for i, a in enumerate(argv)):
            i = next(i for i, a in enumerate(argv) if a.startswith("{") and argv[i - 1] == "--config")
            del argv[i - 1:i + 1]  # an overlay an earlier step writes (a pilot's, the plan's)
        buf = io.StringIO()
        with redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
            main([*argv, "--print_config"])
        assert exit_.value.code in (0, None), step.id
        assert re.search(r"class_path: lemon_pl\.(operators|pinn\.stages|multilevel\.stage)\.", buf.getvalue())


def test_paper_scale_uses_reference_model_sizes():
    for name in ("scaling", "zero-shot", "finetune"):
        steps = build_steps(name, "paper")
        fits = [s for s in steps if s.command == "fit"]
        assert all(any(a.endswith("model/prose_paper.yaml") for a in s.argv) for s in fits), name
    ic = [s for s in build_steps("init-comparison", "paper") if s.command == "fit" and s.id.startswith("prose")]
    assert ic and all(any(a.endswith("model/prose_paper.yaml") for a in s.argv) for s in ic)
