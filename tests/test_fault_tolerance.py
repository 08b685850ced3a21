"""Killed jobs resume exactly, NaN losses stop cleanly, checkpoints are atomic, bad input is one line."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import CONFIGS, REPO

NET = ["--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
       "--model.init_args.net.init_args.n_heads", "2"]


def args(root, runs, *extra):
    return ["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", "heat,kdv", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.limit_train_batches", "4",
            "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "3", *NET, *extra]


def cli(cmd, cwd, **env):
    full_env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", **env)
    return subprocess.run([sys.executable, "-m", "lemon_pl", *cmd], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def last_val(run_dir):
    rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("val/rel_l2")]
    return rows[-1]


@pytest.mark.slow  # tests/test_resume_mid_epoch.py kills mid-epoch and resumes in the default suite
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tiny_root, tmp_path):
    ref = cli(args(tiny_root, tmp_path / "ref"), tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = cli(args(tiny_root, tmp_path / "run", "--trainer.callbacks+=tests.helpers.KillAt"), tmp_path,
                 LEMON_KILL_AT="1:2")
    assert killed.returncode == -9  # SIGKILL: no handler ran, nothing was cleaned up
    ckpt_dir = tmp_path / "run/pretrain/version_0/checkpoints"
    assert (ckpt_dir / "last.ckpt").exists() and not list(ckpt_dir.glob(".*tmp*"))
    resumed = cli(args(tiny_root, tmp_path / "run", "--ckpt_path", str(ckpt_dir / "last.ckpt")), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "ref/pretrain/version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "run/pretrain/version_1/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 12
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    va, vb = last_val(tmp_path / "ref/pretrain/version_0"), last_val(tmp_path / "run/pretrain/version_1")
    assert va["val/rel_l2"] == vb["val/rel_l2"] and va["val/rel_l2/kdv"] == vb["val/rel_l2/kdv"]


def test_nan_loss_stops_with_step_family_batch_and_saves_last_good_state(tiny_root, tmp_path):
    res = cli(args(tiny_root, tmp_path, "--trainer.callbacks+=tests.helpers.PoisonBatch"), tmp_path,
              LEMON_POISON_STEP="5")
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("lemon-pl: error: non-finite training loss")
    assert "global step 5" in line and "epoch 1, batch 1" in line and "families [" in line
    saved = torch.load(tmp_path / "pretrain/version_0/checkpoints/last.ckpt", weights_only=False)
    assert saved["global_step"] == 5  # the state before the poisoned step
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from lemon_pl.core.checkpointing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, target)
    before = target.read_bytes()

    def broken(obj, fh, *a, **k):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"a": torch.zeros(3)}, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("extra, needle", [
    (["--model.init_args.no_such_option", "1"], "no_such_option"),
    # each case is a fresh CLI process (~10 s): four of the five run in CI's slow step
    pytest.param(["--trainer.max_epochs", "many"], "max_epochs", marks=pytest.mark.slow),
    pytest.param(["--data.init_args.train_families", "[]"], "empty", marks=pytest.mark.slow),
    pytest.param(["--data.init_args.train_families", "[heat,navier_stokes]"], "unknown family 'navier_stokes'",
                 marks=pytest.mark.slow),
    pytest.param(["--model.class_path", "lemon_pl.operators.Nope"], "Nope", marks=pytest.mark.slow),
])
def test_bad_input_is_reported_clearly(tiny_root, tmp_path, extra, needle):
    res = cli(args(tiny_root, tmp_path, *extra), tmp_path)
    assert res.returncode not in (0, None) and needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "pretrain").exists()  # nothing was started or written


def test_missing_data_root_without_generation(tmp_path):
    res = cli(args(tmp_path / "nowhere", tmp_path, "--data.init_args.generate", "false"), tmp_path)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and err[-1].startswith("lemon-pl: error:") and "lemon-pl generate" in err[-1]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "nowhere").exists()


def test_resume_continues_the_same_wandb_run(tmp_path):
    from jsonargparse import Namespace

    from lemon_pl.cli.lightning import LemonCLI
    from lemon_pl.core.checkpointing import WANDB_ID_KEY, wandb_run_id

    ckpt = tmp_path / "last.ckpt"
    torch.save({WANDB_ID_KEY: "abc123", "state_dict": {}}, ckpt)
    assert wandb_run_id(ckpt) == "abc123"
    logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(project="p", id=None))
    LemonCLI._continue_wandb_run("fit", Namespace(ckpt_path=str(ckpt), trainer=Namespace(logger=logger)))
    assert logger.init_args.id == "abc123"
