"""The stage contract: every shipped stage config fits, tests and writes the one report.

A *stage config* is any YAML under ``configs/`` whose ``model.class_path`` (after its ``defaults:``)
names a ``LightningModule``, other than a method's shared defaults (``configs/<method>/base.yaml``);
they are found here, not listed, so a new one is covered the day it is
added. Each runs 2 training steps of ``lemon-pl fit`` and a ``lemon-pl test`` from the fit's
``last.ckpt``, on tiny data (operator families generated once per session by ``conftest.tiny_root``,
multi-level files by ``lemon-pl generate --levels`` once per family, none for physics-informed
problems), scaled only by the flags of ``SCALE`` (one row per data module: a new data module needs a
row, or its configs fail here). Then the written report is checked:

- ``test_metrics.json`` is in the test run's log folder, with ``stage == "test"``, its group and metric
  names, and a ``families`` mapping of rows (an ``overall`` row where the stage pools its groups)
  whose headline metric (``rel_l2``, else the first metric) is finite;
- ``test_metrics.csv`` holds the same rows;
- the fit wrote ``checkpoints/last.ckpt``, which loads with ``torch.load(weights_only=True)`` (as
  lemon-pl loads every checkpoint) and holds the stage's weights.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from lemon_pl.cli import main
from lemon_pl.core.yamlio import merged
from tests.conftest import CONFIGS

LEVELS = "32,64,128,256"


def _resolved_raw(path: Path) -> dict:
    """The file merged over its ``defaults:`` (paths relative to it), later keys winning: enough to
    read the class paths without starting the CLI."""
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict = {}
    for dep in raw.get("defaults") or []:
        out = merged(out, _resolved_raw(path.parent / dep))
    return merged(out, {k: v for k, v in raw.items() if k != "defaults"})


def _class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def stage_configs() -> list[tuple[Path, str, str]]:
    """``(config, model class path, data class path)`` of every stage config under configs/."""
    from lightning.pytorch import LightningModule

    found = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        if path.name == "base.yaml":  # a method's shared defaults (configs/<method>/base.yaml), no stage
            continue
        raw = _resolved_raw(path)
        model = (raw.get("model") or {}).get("class_path") if isinstance(raw.get("model"), dict) else None
        if model and isinstance(_class(model), type) and issubclass(_class(model), LightningModule):
            found.append((path, model, (raw.get("data") or {}).get("class_path")))
    return found


STAGE_CONFIGS = stage_configs()

COMMON = ["--trainer.max_steps", "2", "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1",
          "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--trainer.num_sanity_val_steps", "0",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL_PROSE = ["--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
               "--model.init_args.net.init_args.n_heads", "2"]
SMALL_META = ["--model.init_args.support_size", "4", "--model.init_args.query_size", "6",
              "--model.init_args.eval_support_size", "4", "--model.init_args.eval_query_size", "8",
              "--data.init_args.tasks_per_batch", "2", "--data.init_args.eval_tasks_per_batch", "2"]

#: the scaling of each data module's configs: tiny data, few points, a small network
SCALE = {
    "lemon_pl.data.datamodule.OperatorFamilyDataModule": lambda data, model: [
        "--data.init_args.root", str(data["operators"]), "--data.init_args.preset", "tiny",
        "--data.init_args.generate", "false", "--data.init_args.train_families", "[heat,kdv]",
        "--data.init_args.eval_families", "[heat,kdv]", "--data.init_args.batch_size", "8",
        "--data.init_args.eval_batch_size", "16", "--model.init_args.log_figures", "false", *SMALL_PROSE,
        *(SMALL_META + ["--model.init_args.eval_steps", "1"] if model.endswith("MetaModule") else [])],
    "lemon_pl.pinn.collocation.CollocationDataModule": lambda data, model: [
        "--data.init_args.n_grid", "[32,20]", "--data.init_args.n_collocation", "64", "--data.init_args.n_ic", "16",
        "--data.init_args.n_bc", "8", "--data.init_args.n_test", "64", "--data.init_args.steps_per_epoch", "1"],
    "lemon_pl.multilevel.data.MultilevelDataModule": lambda data, model: [
        "--config", str(CONFIGS / "multilevel/tiny.yaml"), "--data.init_args.root", str(data["multilevel"]())],
}


@pytest.fixture(scope="session")
def contract_data(tiny_root, tmp_path_factory):
    """Tiny data for every kind of stage: the session's operator families; level files made on first use."""
    root = tmp_path_factory.mktemp("contract_levels")
    made: set[str] = set()

    def multilevel(family: str):
        def make():
            if family not in made:
                extra = ["--nt", "2", "--gamma", "0"] if family == "inviscid_burgers" else []
                assert main(["generate", "--preset", "tiny", "--families", family, "--levels", LEVELS,
                             "--root", str(root), *extra]) == 0
                made.add(family)
            return root
        return make

    return {"operators": tiny_root, "multilevel_family": multilevel}


@pytest.mark.parametrize("config, model, data_class", STAGE_CONFIGS,
                         ids=[p.relative_to(CONFIGS).as_posix() for p, _, _ in STAGE_CONFIGS])
def test_stage_config_fits_tests_and_writes_the_report(config, model, data_class, contract_data, tmp_path,
                                                       monkeypatch, capsys):
    assert data_class in SCALE, f"{config}: add a row for {data_class} to SCALE (how to run it on tiny data)"
    raw = _resolved_raw(config)
    data = dict(contract_data)
    family = ((raw.get("data") or {}).get("init_args") or {}).get("family")
    data["multilevel"] = contract_data["multilevel_family"](family) if family else None
    monkeypatch.chdir(tmp_path)
    common = [*COMMON, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", "run",
              *SCALE[data_class](data, model)]
    assert main(["fit", "--config", str(config), *common]) == 0
    fit_dir = tmp_path / "run" / "version_0"
    last = fit_dir / "checkpoints" / "last.ckpt"
    assert last.is_file(), f"no last.ckpt in {fit_dir}: {sorted(p.name for p in fit_dir.rglob('*'))}"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["state_dict"] and all(torch.isfinite(v).all() for v in saved["state_dict"].values()
                                       if torch.is_tensor(v) and v.is_floating_point())
    assert saved["global_step"] >= 1

    assert main(["test", "--config", str(config), "--ckpt_path", str(last), *common]) == 0
    test_dir = tmp_path / "run" / "version_1"
    report = json.loads((test_dir / "test_metrics.json").read_text())
    assert report["stage"] == "test"
    rows = report["families"]
    assert isinstance(rows, dict) and rows
    metrics = report.get("metrics") or list(next(iter(rows.values())))
    headline = "rel_l2" if "rel_l2" in metrics else metrics[0]
    pooled = rows.get("overall") or next(iter(rows.values()))
    assert math.isfinite(pooled[headline]), (headline, pooled)
    assert all(headline in row for row in rows.values())
    with open(test_dir / "test_metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    assert table, "test_metrics.csv holds no row"
