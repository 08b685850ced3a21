"""Run folders written before issue 23 moved the stages name ``lemon_pl.modules...`` in their
``config.yaml``: ``test``, resuming ``fit`` and ``predict`` on such a run work, with the same results
as on today's names (the CLI translates class paths where it reads configs: ``lemon_pl.cli.legacy``)."""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from lemon_pl.cli import main
from lemon_pl.cli.legacy import MOVED_MODULES, MOVED_NAMES, translate_class_path, translate_config
from tests.conftest import CONFIGS

FAMILIES = ["heat", "advection"]
#: what the old config of an operator run named (the module of each class before the move)
OLD = {"lemon_pl.operators.PretrainModule": "lemon_pl.modules.PretrainModule",
       "lemon_pl.core.callbacks.": "lemon_pl.modules.callbacks."}


def _importable(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_old_name_translates_to_a_class_that_exists():
    for old, new in MOVED_NAMES.items():
        assert translate_class_path(old) == new
        assert isinstance(_importable(new), type), new
    examples = {"lemon_pl.modules.pinn.TimeMarchingPINN": "lemon_pl.pinn.stages.TimeMarchingPINN",
                "lemon_pl.modules.multilevel.MultilevelRegression": "lemon_pl.multilevel.stage.MultilevelRegression",
                "lemon_pl.modules.finetune.FinetuneModule": "lemon_pl.operators.finetune.FinetuneModule",
                "lemon_pl.modules.callbacks.MetricTables": "lemon_pl.core.callbacks.MetricTables"}
    for old, new in examples.items():
        assert translate_class_path(old) == new and isinstance(_importable(new), type)
    for module in MOVED_MODULES.values():
        importlib.import_module(module)
    # today's names and other packages' classes are left alone
    for same in ("lemon_pl.models.Prose", "lemon_pl.pinn.stages.PINNModule", "torch.optim.AdamW", "modules.X"):
        assert translate_class_path(same) == same


def test_a_config_tree_is_translated_at_any_depth_and_not_modified():
    tree = {"model": {"class_path": "lemon_pl.modules.MetaModule",
                      "init_args": {"net": {"class_path": "lemon_pl.models.Prose", "init_args": {"d_model": 8}}}},
            "trainer": {"callbacks": [{"class_path": "lemon_pl.modules.callbacks.FitSummary"}], "class_path": 3}}
    out, changed = translate_config(tree)
    assert out["model"]["class_path"] == "lemon_pl.operators.meta.MetaModule"
    assert out["model"]["init_args"]["net"]["class_path"] == "lemon_pl.models.Prose"
    assert out["trainer"]["callbacks"][0]["class_path"] == "lemon_pl.core.callbacks.FitSummary"
    assert changed == [("lemon_pl.modules.MetaModule", "lemon_pl.operators.meta.MetaModule"),
                       ("lemon_pl.modules.callbacks.FitSummary", "lemon_pl.core.callbacks.FitSummary")]
    assert tree["model"]["class_path"] == "lemon_pl.modules.MetaModule"  # the input is kept


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A tiny operator run, and its config.yaml rewritten with the class paths of before the move."""
    from lemon_pl.data.generate import generate

    work = tmp_path_factory.mktemp("legacy")
    root = work / "data"
    generate(root, "tiny", FAMILIES, progress=False)
    common = ["--data.init_args.root", str(root), "--data.init_args.preset", "tiny", "--data.init_args.batch_size", "8",
              "--data.init_args.train_families", ",".join(FAMILIES), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
              "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2",
              "--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
              "--model.init_args.net.init_args.n_heads", "2"]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
                     *common, "--trainer.logger.init_args.save_dir", str(work / "runs"), "--trainer.max_epochs", "-1",
                     "--trainer.max_steps", "3"]) == 0
    finally:
        os.chdir(cwd)
    run = work / "runs" / "pretrain" / "version_0"
    text = (run / "config.yaml").read_text()
    for new, old in OLD.items():
        assert new in text
        text = text.replace(new, old)
    assert "lemon_pl.operators" not in text and "lemon_pl.core" not in text
    (work / "old").mkdir()
    (work / "old" / "config.yaml").write_text(text)
    return {"work": work, "run": run, "ckpt": run / "checkpoints" / "last.ckpt", "old": work / "old" / "config.yaml",
            "new": run / "config.yaml", "common": common}


def _test(run, config, out, capsys):
    code = main(["test", "--config", str(config), "--ckpt_path", str(run["ckpt"]),
                 "--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 0, err
    metrics = list(out.rglob("test_metrics.json"))
    assert len(metrics) == 1
    report = json.loads(metrics[0].read_text())
    report.pop("seconds", None)  # wall time, the only value that may differ
    return report, err


def test_test_and_resume_with_an_old_config_give_todays_results(old_run, tmp_path, capsys):
    new, err_new = _test(old_run, old_run["new"], tmp_path / "new", capsys)
    old, err_old = _test(old_run, old_run["old"], tmp_path / "old", capsys)
    assert old == new and "lemon-pl: note:" not in err_new
    notes = [ln for ln in err_old.splitlines() if ln.startswith("lemon-pl: note:")]
    assert notes == [f"lemon-pl: note: {old_run['old']} names classes of an earlier lemon-pl, read as today's: "
                     "lemon_pl.modules.callbacks.MetricTables -> lemon_pl.core.callbacks.MetricTables, "
                     "lemon_pl.modules.callbacks.PredictionFigures -> lemon_pl.core.callbacks.PredictionFigures, "
                     "lemon_pl.modules.callbacks.FitSummary -> lemon_pl.core.callbacks.FitSummary (+1 more)"]
    # resuming the old run from its checkpoint with its old config trains on
    out = tmp_path / "resumed"
    assert main(["fit", "--config", str(old_run["old"]), "--ckpt_path", str(old_run["ckpt"]), "--trainer.max_steps",
                 "4", "--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false"]) == 0
    import torch

    state = torch.load(next(out.rglob("last.ckpt")), map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    saved = next(out.rglob("config.yaml")).read_text()
    assert "lemon_pl.operators.pretrain.PretrainModule" in saved and "lemon_pl.modules" not in saved
    assert "lemon_pl.core.callbacks.FitSummary" in saved


def test_predict_with_an_old_run_config_predicts_as_with_todays(old_run, tmp_path, capsys):
    outs = {}
    for name in ("new", "old"):
        outs[name] = tmp_path / name
        assert main(["predict", "--ckpt_path", str(old_run["ckpt"]), "--run-config", str(old_run[name]),
                     "--family", "heat", "--u0", "sin(pi*x)", "--no-solver", "--out", str(outs[name])]) == 0, \
            capsys.readouterr().err
    new, old = np.load(outs["new"] / "prediction.npz"), np.load(outs["old"] / "prediction.npz")
    np.testing.assert_array_equal(old["u"], new["u"])
    assert str(old["model_class"]) == "PretrainModule"


def old_pinn_config(tmp_path, weight_bc: float = 2.0):
    """A physics-informed run config as lemon-pl wrote it before issue 23: the problem named by a
    string on both sides of the link, its arguments in problem_args, three loss weights."""
    import yaml

    from lemon_pl.cli.lightning import compose

    cfg, _ = compose(["fit", "--config", str(CONFIGS / "pinn" / "pinn.yaml")])
    cfg = json.loads(json.dumps(cfg, default=str))
    cfg.pop("defaults", None)  # a run's config.yaml is the composed config
    data, model = cfg["data"]["init_args"], cfg["model"]["init_args"]
    data["problem"], data["problem_args"] = "cdr", {"ic": "gauss_pi_2"}
    data.update(n_grid=[32, 11], n_collocation=64, n_ic=32, n_bc=11, n_test=64, steps_per_epoch=2)
    for key in ("problem", "mu_values", "evaluation_grid", "in_dim", "out_dim", "mu_dim"):
        model.pop(key, None)
    model.update(problem="cdr", problem_args={"ic": "gauss_pi_2"}, weight_residual=1.0, weight_ic=1.0,
                 weight_bc=weight_bc)
    cfg["model"]["class_path"] = "lemon_pl.modules.PINNModule"
    cfg["trainer"].update(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          callbacks=None, default_root_dir=str(tmp_path))
    path = tmp_path / "old_pinn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_an_old_physics_informed_config_is_read_as_todays(tmp_path):
    import yaml

    tree = yaml.safe_load(old_pinn_config(tmp_path).read_text())
    out, changed = translate_config(tree)
    data, model = out["data"]["init_args"], out["model"]["init_args"]
    assert data["problem"] == {"class_path": "lemon_pl.pinn.problems.ConvectionDiffusionReaction",
                               "init_args": {"ic": "gauss_pi_2"}} and "problem_args" not in data
    assert out["model"]["class_path"] == "lemon_pl.pinn.stages.PINNModule"
    assert model["weights"] == {"bc": 2.0}  # 1.0 was the old default and is every condition's own weight
    assert not {"problem", "problem_args", "weight_residual", "weight_ic", "weight_bc"} & set(model)
    assert len(changed) == 3


def test_an_old_physics_informed_config_trains(tmp_path, capsys):
    path = old_pinn_config(tmp_path)
    assert main(["fit", "--config", str(path)]) == 0
    assert "names classes of an earlier lemon-pl" in capsys.readouterr().err
