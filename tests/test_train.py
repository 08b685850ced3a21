"""End-to-end training through the CLI on tiny data: every model, test, resume, W&B, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lemon_pl.cli import main
from tests.conftest import CONFIGS, REPO

TINY_NET = {
    "prose": ["--config", str(CONFIGS / "model/prose.yaml"), "--model.init_args.net.init_args.d_model", "32",
              "--model.init_args.net.init_args.dim_ffn", "64"],
    "deeponet": ["--config", str(CONFIGS / "model/deeponet.yaml"), "--model.init_args.net.init_args.basis_dim", "8",
                 "--model.init_args.net.init_args.hidden", "16"],
    "fno": ["--config", str(CONFIGS / "model/fno.yaml"), "--model.init_args.net.init_args.width", "8",
            "--model.init_args.net.init_args.modes", "8"],
}


def base_args(root: Path, runs: Path, families="heat,kdv", *extra) -> list[str]:
    return [
        "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
        "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
        "--data.init_args.train_families", families, "--data.init_args.batch_size", "8",
        "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", *extra,
    ]


@pytest.mark.parametrize("model", list(TINY_NET))
def test_fast_dev_run_every_model(model, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", *base_args(tiny_root, tmp_path / "runs"), *TINY_NET[model], "--trainer.fast_dev_run", "2"]) == 0


def _fit(tiny_root, runs, *extra):
    assert main(["fit", *base_args(tiny_root, runs), *TINY_NET["prose"], "--trainer.limit_train_batches", "3",
                 "--trainer.limit_val_batches", "1", *extra]) == 0


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_fit_writes_run_folder_then_test_writes_tables(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit(tiny_root, tmp_path / "runs", "--trainer.max_epochs", "2")
    run = tmp_path / "runs" / "pretrain" / "version_0"
    assert (run / "config.yaml").exists() and "PretrainModule" in (run / "config.yaml").read_text()
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}
    assert (run / "metrics.csv").read_text().count("val/rel_l2") >= 1
    figures = sorted((run / "figures").glob("*.png"))
    assert [f.name for f in figures if f.name.startswith("epoch001")] == ["epoch001_heat.png", "epoch001_kdv.png"]

    assert main(["test", *base_args(tiny_root, tmp_path / "runs"), *TINY_NET["prose"], "--ckpt_path",
                 str(run / "checkpoints" / "last.ckpt")]) == 0
    test_run = tmp_path / "runs" / "pretrain" / "version_1"
    table = json.loads((test_run / "test_metrics.json").read_text())
    assert set(table["families"]) == {"heat", "kdv", "overall"}
    for row in table["families"].values():
        assert 0 < row["rel_l2"] < 10 and 0 < row["rel_l2_persistence"] < 10
    assert (test_run / "test_metrics.csv").read_text().startswith("family,rel_l2,")
    # the one writer's schema (the multi-level report's: tests/multilevel/test_stage.py)
    from lemon_pl.core.report import EvaluationReport

    assert set(EvaluationReport("test", "family", {}).to_json()) <= set(table)
    assert table["group"] == "family" and table["metrics"][0] == "rel_l2" and table["mode"] == "zero-shot"


@pytest.mark.slow  # the default tier keeps resume == uninterrupted through tests/test_resume_mid_epoch.py[sample]
def test_resumed_run_equals_uninterrupted_run(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit(tiny_root, tmp_path / "a", "--trainer.max_epochs", "2")
    _fit(tiny_root, tmp_path / "b", "--trainer.max_epochs", "2",  # same schedule, stopped after epoch 1
         "--trainer.callbacks+=tests.helpers.StopAfterEpochs")
    last = tmp_path / "b" / "pretrain" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["optimizer_states"] and state["lr_schedulers"]
    _fit(tiny_root, tmp_path / "b", "--trainer.max_epochs", "2", "--ckpt_path", str(last))
    a = _weights(tmp_path / "a" / "pretrain" / "version_0" / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "b" / "pretrain" / "version_1" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    first = _weights(last)
    assert any(not torch.equal(first[k], a[k]) for k in a)  # the second epoch did train


def test_wandb_logger_in_disabled_mode(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    from lightning.pytorch.loggers import WandbLogger

    from lemon_pl.cli.lightning import LemonCLI

    cli = LemonCLI(args=["fit", *base_args(tiny_root, tmp_path / "runs"), *TINY_NET["fno"],
                         "--config", str(CONFIGS / "logger/wandb.yaml"),
                         "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb"),
                         "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    assert isinstance(cli.trainer.logger, WandbLogger)
    assert cli.trainer.global_step == 2


@pytest.mark.ddp
def test_ddp_two_processes_on_cpu(tiny_root, tmp_path):
    """2 gloo processes: the ranks train on disjoint samples and end with identical weights."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO), LEMON_RECORD_DIR=str(out), WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "lemon_pl", "fit", *base_args(tiny_root, tmp_path / "runs"), *TINY_NET["prose"],
           "--config", str(CONFIGS / "trainer/ddp_cpu.yaml"), "--trainer.max_epochs", "2",
           "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
           "--trainer.callbacks+=tests.helpers.RecordRankBatches"]
    # two epochs with validation, figures and checkpoints: rank-0-only work must not deadlock
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert len(r0["indices"]) == len(r1["indices"]) == 2 * 2 * 8
    assert not set(r0["indices"]) & set(r1["indices"])  # (epoch, sample): disjoint within each epoch
    run = tmp_path / "runs" / "pretrain" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").exists() and list((run / "figures").glob("epoch001_*.png"))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k


def test_a_plateau_schedule_from_the_optim_overlay_runs_on_its_monitored_metric(tiny_root, tmp_path, monkeypatch):
    """configs/optim/plateau.yaml through the CLI: AdamW as configured, ReduceLROnPlateau stepped per
    epoch on val/rel_l2 (Lightning refuses a monitored metric that is never logged)."""
    monkeypatch.chdir(tmp_path)
    _fit(tiny_root, tmp_path / "runs", "--config", str(CONFIGS / "optim/plateau.yaml"), "--trainer.max_epochs", "2")
    state = torch.load(tmp_path / "runs/pretrain/version_0/checkpoints/last.ckpt",
                       map_location="cpu", weights_only=False)
    sched = state["lr_schedulers"][0]
    # stepped once per epoch, not per batch (3 a epoch): after epoch 1 (last.ckpt is written at epoch 2's
    # validation end, before that epoch's step)
    assert sched["patience"] == 2 and sched["factor"] == 0.5 and sched["last_epoch"] == 1 and state["global_step"] == 6
    assert state["optimizer_states"][0]["param_groups"][0]["weight_decay"] == 1e-4
