"""Every YAML under configs/ parses, composes with the stage configs and links data -> model."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import yaml

from tests.conftest import CONFIGS
from lemon_pl.cli import main
from lemon_pl.core.yamlio import merged

STAGES = sorted(p for p in CONFIGS.glob("*.yaml"))
#: the overlays of the physics-informed stages (composed with configs/pinn/pinn.yaml)
PINN_OVERLAYS = sorted([*CONFIGS.glob("model/pinn/*.yaml"), *CONFIGS.glob("data/pinn_*.yaml"),
                        CONFIGS / "optim/lbfgs.yaml", CONFIGS / "callbacks/pinn.yaml", CONFIGS / "trainer/pinn.yaml"])
PINN_STAGES = sorted(CONFIGS.glob("pinn/*.yaml"))
#: the multi-level stages and their overlays (composed with configs/multilevel/schrodinger.yaml)
MULTILEVEL_OVERLAY_NAMES = ("tiny.yaml", "fno_native.yaml")
MULTILEVEL_STAGES = sorted(p for p in CONFIGS.glob("multilevel/*.yaml") if p.name not in MULTILEVEL_OVERLAY_NAMES)
MULTILEVEL_OVERLAYS = [*(CONFIGS / "multilevel" / n for n in MULTILEVEL_OVERLAY_NAMES), CONFIGS / "callbacks/multilevel.yaml",
                       CONFIGS / "trainer/multilevel.yaml", CONFIGS / "model/fno.yaml"]
OVERLAYS = sorted(p for p in CONFIGS.glob("*/*.yaml")
                  if p.parent.name not in ("experiments", "pinn", "multilevel", "operators") and p not in PINN_OVERLAYS)
#: the shared defaults of the operator stage configs (configs/*.yaml)
OPERATORS_BASE = CONFIGS / "operators" / "base.yaml"


def print_config(*configs) -> dict:
    args = ["fit"]
    for c in configs:
        args += ["--config", str(c)]
    buf = io.StringIO()
    with redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        main(args + ["--print_config"])
    assert exit_.value.code in (0, None)
    return yaml.safe_load(buf.getvalue())


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_stage_config_parses(path):
    cfg = print_config(path)
    assert cfg["model"]["class_path"].startswith("lemon_pl.operators.")
    assert cfg["data"]["class_path"] == "lemon_pl.data.datamodule.OperatorFamilyDataModule"


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_operator_stage_holds_only_what_differs_from_the_base(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    assert raw["defaults"] == ["operators/base.yaml"]
    base = yaml.safe_load(OPERATORS_BASE.read_text())
    repeated = {k: v for k, v in _leaves(raw).items() if k in _leaves(base) and _leaves(base)[k] == v}
    assert not repeated, f"{path.name} repeats what configs/operators/base.yaml sets: {repeated}"
    # the resolved config is the one of the single flat file the stage was before the base existed:
    # the network and callbacks as defaults, the base's keys and the stage's own in one file
    flat = merged({k: v for k, v in base.items() if k != "defaults"}, {k: v for k, v in raw.items() if k != "defaults"})
    flat = {"defaults": [str(CONFIGS / "model/prose.yaml"), str(CONFIGS / "callbacks/default.yaml")], **flat}
    (tmp_path / path.name).write_text(yaml.safe_dump(flat, sort_keys=False))
    resolved, before = print_config(path), print_config(tmp_path / path.name)
    resolved.pop("defaults"), before.pop("defaults")
    assert resolved == before


def test_operators_base_is_no_stage():
    raw = yaml.safe_load(OPERATORS_BASE.read_text())
    assert "class_path" not in raw.get("model", {})  # the stage files name their stage class


@pytest.mark.parametrize("path", PINN_STAGES, ids=lambda p: p.name)
def test_pinn_stage_config_parses(path):
    cfg = print_config(path)
    assert cfg["model"]["class_path"].startswith("lemon_pl.pinn.stages.")
    assert cfg["data"]["class_path"] == "lemon_pl.pinn.collocation.CollocationDataModule"
    assert cfg["trainer"]["inference_mode"] is False  # residual metrics in validation and test
    net = cfg["model"]["init_args"]["net"]["init_args"]
    assert net["in_dim"] == 2  # linked from the data
    if "mu_dim" in net:
        assert net["mu_dim"] == 3


@pytest.mark.parametrize("path", PINN_OVERLAYS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pinn_overlay_composes_with_the_pinn_stage(path):
    base = CONFIGS / ("pinn/hyper_lr_pinn.yaml" if "pinn_helmholtz" in path.name else "pinn/pinn.yaml")
    check_overlay(print_config(base, path), path)


@pytest.mark.parametrize("path", MULTILEVEL_STAGES, ids=lambda p: p.name)
def test_multilevel_stage_config_parses(path):
    cfg = print_config(path)
    assert cfg["model"]["class_path"] == "lemon_pl.multilevel.stage.MultilevelRegression"
    assert cfg["data"]["class_path"] == "lemon_pl.multilevel.data.MultilevelDataModule"
    assert len(cfg["data"]["init_args"]["levels"]) == len(cfg["data"]["init_args"]["n_samples"])


@pytest.mark.parametrize("path", MULTILEVEL_OVERLAYS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_multilevel_overlay_composes(path):
    check_overlay(print_config(CONFIGS / "multilevel/schrodinger.yaml", path), path)


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_overlay_composes_with_pretrain(path):
    check_overlay(print_config(CONFIGS / "pretrain.yaml", path), path)


def check_overlay(cfg: dict, path) -> None:
    overlay = yaml.safe_load(path.read_text())
    for section, body in overlay.items():  # every key of the overlay wins
        if section == "trainer":
            for key, value in body.items():
                if key == "logger":
                    assert cfg["trainer"]["logger"]["class_path"] == value["class_path"]
                elif key == "callbacks":
                    names = [c if isinstance(c, str) else c["class_path"] for c in value]
                    assert [c["class_path"] for c in cfg["trainer"]["callbacks"]] == names
                else:
                    assert cfg["trainer"][key] == value
        elif section == "model":
            if "optimizer" in body["init_args"]:
                assert cfg["model"]["init_args"]["optimizer"]["class_path"] == body["init_args"]["optimizer"]["class_path"]
                continue
            net = body["init_args"]["net"]
            if "class_path" in net:  # an overlay may set only init_args of the stage's network
                assert cfg["model"]["init_args"]["net"]["class_path"] == net["class_path"]
            for key, value in net.get("init_args", {}).items():
                assert cfg["model"]["init_args"]["net"]["init_args"][key] == value
        elif section == "data":
            for key, value in body["init_args"].items():
                assert cfg["data"]["init_args"][key] == value


def test_data_values_are_linked_into_the_model(tmp_path):
    from lemon_pl.cli.lightning import LemonCLI

    cli = LemonCLI(args=["--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "model/fno.yaml"),
                         "--data.init_args.root", str(tmp_path), "--data.init_args.nx", "64",
                         "--data.init_args.input_len", "2", "--data.init_args.eval_families", "[heat,kdv]"],
                   run=False)
    net = cli.model.net
    assert type(net).__name__ == "FNO"
    assert net.nx == 64 and net.input_len == 2 and net.output_len == 31
    assert cli.model.eval_families == ["heat", "kdv"] and len(cli.model.train_families) == 7


def test_paper_size_prose_has_71m_parameters(tmp_path):
    from lemon_pl.cli.lightning import LemonCLI
    from lemon_pl.models import count_parameters

    cli = LemonCLI(args=["--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "model/prose_paper.yaml"),
                         "--data.init_args.root", str(tmp_path)], run=False)
    n = count_parameters(cli.model.net)
    assert abs(n - 71.10e6) / 71.10e6 < 0.03, n


def test_bad_config_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: lemon_pl.operators.NoSuchModule\n")
    code = main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "NoSuchModule" in err and "usage:" not in err
