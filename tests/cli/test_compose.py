"""``lemon_pl.cli.lightning.compose``: the one composer of stage configs. What it returns is what
``lemon-pl fit --print_config`` prints for the same arguments (``defaults:``, overlays and flags mean
the same for the planner, the experiments' analysis steps and fit); it builds and seeds nothing."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
import yaml

from lemon_pl.cli import main
from lemon_pl.cli.lightning import ComposeError, compose
from tests.conftest import CONFIGS

CASES = [
    [str(CONFIGS / "multilevel/schrodinger.yaml"), str(CONFIGS / "multilevel/tiny.yaml")],
    [str(CONFIGS / "meta.yaml"), str(CONFIGS / "trainer/cpu.yaml")],
]


@pytest.mark.parametrize("configs", CASES, ids=["multilevel", "meta"])
def test_compose_is_what_fit_would_run_with(configs):
    argv = ["fit", *[x for c in configs for x in ("--config", c)], "--data.init_args.root", "/elsewhere",
            "--trainer.max_steps", "3"]
    buf = io.StringIO()
    with redirect_stdout(buf), pytest.raises(SystemExit):
        main([*argv, "--print_config"])
    printed = yaml.safe_load(buf.getvalue())
    state = torch.random.get_rng_state()
    config, sources = compose(argv)
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing seeded
    for key in ("defaults", "ckpt_path", "weights_only"):  # fit's own options: no part of a stage config
        printed.pop(key, None), config.pop(key, None)
    assert config == printed
    assert config["data"]["init_args"]["root"] == "/elsewhere" and config["trainer"]["max_steps"] == 3
    # sources: the last file that sets a key (a defaults file counts as where it is read)
    if "multilevel" in configs[0]:
        assert sources["data.init_args.family"] == configs[0] and sources["data.init_args.epochs"] == configs[1]
        assert sources["data.init_args.levels"].endswith("multilevel/base.yaml")


def test_a_config_that_does_not_parse_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: abc\n")
    with pytest.raises(ComposeError) as err:
        compose(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(bad)])
    assert str(err.value) == f"trainer.max_epochs in {bad}: Expected a <class 'int'>, got 'abc'"
