"""User errors of the Lightning commands: one line naming the file and key, exit 2, nothing damaged;
NaN/Inf stops keep a finite last state; Ctrl-C saves and says how to resume."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from lightning.pytorch import Callback

from lemon_pl.cli import main
from tests.conftest import CONFIGS, REPO

NET = ["--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
       "--model.init_args.net.init_args.n_heads", "2"]


def fit_args(root, runs, *extra, config="pretrain.yaml"):
    return ["--config", str(CONFIGS / config), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", "heat,kdv", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *NET, *extra]


def one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    lines = [ln for ln in err if ln.startswith("lemon-pl:")]
    assert len(lines) == 1 and lines[0].startswith("lemon-pl: error:"), err
    assert "Traceback" not in "\n".join(err) and "usage:" not in "\n".join(err)
    assert len(err) <= 2  # the error and at most a hint to --help
    return lines[0]


@pytest.mark.parametrize("content,expect", [
    ("", "is empty"),
    ("model: [\n", "YAML syntax error (line 2"),
    ("trainer:\n  max_epoch: 3\n", "unknown option trainer.max_epoch in {f}; did you mean trainer.max_epochs?"),
    ("trainer:\n  max_epochs: abc\n", "trainer.max_epochs in {f}: Expected a <class 'int'>"),
    ("model:\n  class_path: lemon_pl.operators.NoSuchModule\n", "NoSuchModule"),
    ("model:\n  init_args:\n    net:\n      init_args:\n        n_head: 2\n",
     "unknown option model.init_args.net.init_args.n_head in {f}; did you mean model.init_args.net.init_args.n_heads?"),
])
def test_config_errors_are_one_line_naming_file_and_key(content, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    line = one_line_error(capsys, main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(bad)]))
    assert expect.format(f=bad) in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv,expect", [
    (["--trainer.max_epoch", "3"], "unknown option trainer.max_epoch on the command line; did you mean trainer.max_epochs?"),
    (["--model.init_args.lr", "1e999"], "model.init_args.lr must be a finite number > 0, got inf"),
    (["--model.init_args.warmup_ratio", "2"], "model.init_args.warmup_ratio must be a finite number >= 0"),
    (["--config", "no/such.yaml"], "config file does not exist"),
])
def test_bad_options_are_one_line(argv, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), *argv,
                                        "--data.init_args.root", str(tmp_path / "d"), "--data.init_args.generate", "false"]))
    assert expect in line


def test_a_value_for_a_linked_argument_is_refused(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, main(["fit", *fit_args(tiny_root, tmp_path / "runs"),
                                        "--model.init_args.net.init_args.nx", "64"]))
    assert "model.init_args.net.init_args.nx is set to 64, but it is linked from the data (nx = 128)" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_overlay_without_a_gpu(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, main(["fit", *fit_args(tiny_root, tmp_path / "runs"),
                                        "--config", str(CONFIGS / "trainer/gpu.yaml")]))
    assert "configs/trainer/cpu.yaml" in line


def test_test_without_a_checkpoint_warns(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["test", *fit_args(tiny_root, tmp_path / "runs"), "--trainer.limit_test_batches", "1"]) == 0
    assert "lemon-pl: warning: `test` without --ckpt_path evaluates the model as constructed" in capsys.readouterr().err


def test_a_failed_test_leaves_the_run_it_was_pointed_at_intact(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    assert main(["fit", *fit_args(tiny_root, runs), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1"]) == 0
    run = runs / "pretrain/version_0"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {"config.yaml", "metrics.csv"} <= set(before)
    code = main(["test", *fit_args(tiny_root, runs), "--model.init_args.net.init_args.d_model", "32",
                 "--trainer.logger.init_args.version", "0", "--ckpt_path", str(run / "checkpoints/last.ckpt")])
    assert "does not match the configured Prose" in one_line_error(capsys, code)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # and a failing command into a new folder leaves no empty version_N/ behind
    code = main(["test", *fit_args(tiny_root, runs), "--model.init_args.net.init_args.d_model", "32",
                 "--ckpt_path", str(run / "checkpoints/last.ckpt")])
    assert code == 2 and sorted(p.name for p in (runs / "pretrain").iterdir()) == ["version_0"]


def test_exploding_learning_rate_keeps_a_finite_last_state(tiny_root, tmp_path, capsys, monkeypatch):
    """lr 1e4 with gradient clipping: the gradients overflow; the stop comes before the update, so
    the saved last.ckpt is finite (before, every tensor of it was NaN)."""
    monkeypatch.chdir(tmp_path)
    code = main(["fit", *fit_args(tiny_root, tmp_path / "runs"), "--model.init_args.lr", "1e4",
                 "--model.init_args.warmup_ratio", "0", "--trainer.max_epochs", "4", "--trainer.limit_val_batches", "1"])
    line = one_line_error(capsys, code)
    assert "non-finite" in line and "global step" in line
    ckpt = tmp_path / "runs/pretrain/version_0/checkpoints/last.ckpt"
    if "saved to" in line or "was kept" in line:
        state = torch.load(ckpt, weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    else:
        assert "no earlier checkpoint" in line


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at training batch LEMON_INTERRUPT_AT of epoch 0."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == int(os.environ["LEMON_INTERRUPT_AT"]):
            raise KeyboardInterrupt


def test_ctrl_c_in_the_first_epoch_saves_and_says_how_to_resume(tiny_root, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", LEMON_INTERRUPT_AT="2")
    cmd = [sys.executable, "-m", "lemon_pl", "fit", *fit_args(tiny_root, tmp_path / "runs"),
           "--trainer.limit_val_batches", "1", "--trainer.callbacks+=tests.cli.test_user_errors.InterruptAt"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ckpt = tmp_path / "runs/pretrain/version_0/checkpoints/last.ckpt"
    assert res.returncode == 130, res.stderr[-2000:]
    assert f"the state was saved to {ckpt}: resume with --ckpt_path {ckpt}" in res.stderr
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2
