"""Every stage through the CLI on tiny data: meta-learning, fine-tuning (LoRA), few-shot, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lemon_pl.cli import main
from tests.conftest import CONFIGS, REPO

SMALL_PROSE = ["--model.init_args.net.class_path", "lemon_pl.models.Prose",
               "--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
               "--model.init_args.net.init_args.n_heads", "2"]
TASKS = ["--data.init_args.tasks_per_batch", "2", "--data.init_args.eval_tasks_per_batch", "2"]
META = ["--model.init_args.support_size", "4", "--model.init_args.query_size", "6", "--model.init_args.inner_steps", "2",
        "--model.init_args.eval_support_size", "4", "--model.init_args.eval_query_size", "8"]


def common(root, runs, config, families="heat,kdv", *extra):
    return ["--config", str(CONFIGS / config), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", families, "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *SMALL_PROSE, *extra]


def run(*args):
    assert main(list(args)) == 0


# Smoke runs of meta-learning variants (exit code only): the slow tier. The configs as shipped
# (inner_lr fixed) run through fit and test in the contract test, tests/test_contract.py.
@pytest.mark.slow
@pytest.mark.parametrize("inner_lr", ["learned", "learned_symbolic"])
def test_meta_config_fast_dev_run(inner_lr, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("fit", *common(tiny_root, tmp_path, "meta.yaml"), *TASKS, *META, "--model.init_args.inner_lr", inner_lr,
        "--trainer.fast_dev_run", "2")


@pytest.mark.slow
def test_vmap_meta_fit(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("fit", *common(tiny_root, tmp_path, "meta.yaml"), *TASKS, *META, "--model.init_args.vmap_tasks", "true",
        "--model.init_args.inner_lr", "learned_symbolic", "--trainer.fast_dev_run", "2")


@pytest.mark.slow
def test_second_order_meta_fit(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("fit", *common(tiny_root, tmp_path, "meta.yaml"), *TASKS, *META, "--model.init_args.first_order", "false",
        "--trainer.fast_dev_run", "1")


def test_meta_module_refuses_sample_batches(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["fit", *common(tiny_root, tmp_path, "meta.yaml"), *META, "--data.init_args.unit", "sample",
                 "--trainer.fast_dev_run", "1"])
    assert code == 2 and "lemon-pl: error: MetaModule trains on operator tasks" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["full", "lora", "decoder"])
def test_finetune_config_fast_dev_run(mode, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("fit", *common(tiny_root, tmp_path, "finetune.yaml", "kdv"), "--model.init_args.mode", mode,
        "--data.init_args.num_train_samples", "8", "--trainer.fast_dev_run", "2")


def test_fewshot_config_runs_zero_and_few_shot(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = common(tiny_root, tmp_path / "runs", "fewshot.yaml", "heat", *TASKS,
                  "--data.init_args.eval_families", "[kdv,Sine_Gordon]", "--model.init_args.eval_support_size", "4",
                  "--model.init_args.eval_query_size", "8")
    run("test", *base, "--model.init_args.eval_steps", "0")
    run("test", *base, "--model.init_args.eval_steps", "3")
    zero = json.loads((tmp_path / "runs/fewshot/version_0/test_metrics.json").read_text())
    few = json.loads((tmp_path / "runs/fewshot/version_1/test_metrics.json").read_text())
    assert zero["mode"] == "zero-shot" and few["mode"] == "few-shot" and few["adapt_steps"] == 3
    assert few["support_size"] == 4 and few["query_size"] == 8
    assert set(few["families"]) == {"kdv", "Sine_Gordon", "overall"}
    assert few["families"]["kdv"]["rel_l2"] != zero["families"]["kdv"]["rel_l2"]
    csv_text = (tmp_path / "runs/fewshot/version_1/test_metrics.csv").read_text()
    assert csv_text.splitlines()[0].split(",")[-1] == "seconds"

    # One run records the error-vs-steps curve; adapting in stages equals adapting in one go.
    run("test", *base, "--model.init_args.eval_steps", "3", "--model.init_args.eval_curve", "[0,1,3,5]")
    curved = json.loads((tmp_path / "runs/fewshot/version_2/test_metrics.json").read_text())
    assert list(curved["curve"]) == ["0", "1", "3", "5"]
    for fam in ("kdv", "Sine_Gordon", "overall"):
        assert curved["curve"]["0"][fam]["rel_l2"] == pytest.approx(zero["families"][fam]["rel_l2"], rel=1e-5)
        assert curved["curve"]["3"][fam]["rel_l2"] == pytest.approx(few["families"][fam]["rel_l2"], rel=1e-5)
        assert curved["families"][fam]["rel_l2"] == pytest.approx(few["families"][fam]["rel_l2"], rel=1e-5)
    assert curved["curve"]["5"]["overall"]["rel_l2"] != curved["curve"]["3"]["overall"]["rel_l2"]
    import numpy as np

    examples = np.load(tmp_path / "runs/fewshot/version_2/test_examples.npz")
    assert {"kdv/true", "kdv/pred", "Sine_Gordon/true", "Sine_Gordon/pred"} <= set(examples.files)
    assert examples["kdv/true"].shape == examples["kdv/pred"].shape and examples["kdv/true"].ndim == 2


def test_pretrain_then_lora_finetune_then_merge(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lemon_pl.cli.lightning import LemonCLI

    run("fit", *common(tiny_root, tmp_path / "pre", "pretrain.yaml"), "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1")
    base_ckpt = tmp_path / "pre/pretrain/version_0/checkpoints/last.ckpt"
    base = {k[4:]: v for k, v in torch.load(base_ckpt, weights_only=False)["state_dict"].items() if k.startswith("net.")}

    ft = common(tiny_root, tmp_path / "ft", "finetune.yaml", "kdv", "--model.init_args.init_from", str(base_ckpt),
                "--model.init_args.mode", "lora", "--model.init_args.lora_rank", "2", "--model.init_args.lr", "1e-2",
                "--data.init_args.num_train_samples", "12", "--trainer.max_steps", "4",
                "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1")
    cli = LemonCLI(args=["fit", *ft])
    net = cli.model.net
    changed = False
    for name, value in net.state_dict().items():
        if name.endswith(("lora_a", "lora_b")):
            changed |= name.endswith("lora_b") and bool(value.abs().sum() > 0)
            continue
        assert torch.equal(value, base[name.replace(".base.", ".")]), name  # frozen base: bit-identical
    assert changed, "the adapters did not train"

    adapter_ckpt = tmp_path / "ft/finetune/version_0/checkpoints/last.ckpt"
    saved = torch.load(adapter_ckpt, weights_only=False)
    assert saved["lemon_adapters_only"] and all(k.endswith(("lora_a", "lora_b")) for k in saved["state_dict"])
    assert os.path.getsize(adapter_ckpt) < 0.5 * os.path.getsize(base_ckpt)

    run("test", *ft, "--ckpt_path", str(adapter_ckpt))
    merged = tmp_path / "merged.ckpt"
    run("merge-lora", "--ckpt", str(adapter_ckpt), "--out", str(merged))
    full = list(ft)
    full[full.index("--model.init_args.mode") + 1] = "full"
    full[full.index("--model.init_args.init_from") + 1] = "null"
    run("test", *full, "--ckpt_path", str(merged))
    a = json.loads((tmp_path / "ft/finetune/version_1/test_metrics.json").read_text())["families"]
    b = json.loads((tmp_path / "ft/finetune/version_2/test_metrics.json").read_text())["families"]
    assert a["kdv"]["rel_l2"] == pytest.approx(b["kdv"]["rel_l2"], rel=1e-5)  # merged == unmerged


def test_checkpoint_of_another_model_is_one_line(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run("fit", *common(tiny_root, tmp_path / "pre", "pretrain.yaml"), "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "1")
    ckpt = tmp_path / "pre/pretrain/version_0/checkpoints/last.ckpt"
    code = main(["test", *common(tiny_root, tmp_path / "pre", "pretrain.yaml"),
                 "--model.init_args.net.init_args.d_model", "32", "--ckpt_path", str(ckpt)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("lemon-pl: error:") and "does not match the configured Prose" in err[-1]


@pytest.mark.ddp
@pytest.mark.slow  # 35 s; the default suite keeps the 2-process gloo fit of tests/test_train.py
def test_meta_ddp_update_equals_single_process(tiny_root, tmp_path):
    """2 processes x 2 tasks give the same outer update as 1 process x 4 tasks."""
    def launch(out, extra):
        env = dict(os.environ, PYTHONPATH=str(REPO), LEMON_RECORD_DIR=str(out), WANDB_MODE="disabled")
        cmd = [sys.executable, "-m", "lemon_pl", "fit", *common(tiny_root, tmp_path / "runs", "meta.yaml"), *META,
               "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
               "--trainer.callbacks+=tests.helpers.RecordRankBatches", *extra]
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]

    launch(tmp_path / "ddp", ["--config", str(CONFIGS / "trainer/ddp_cpu.yaml"), "--data.init_args.tasks_per_batch", "2"])
    launch(tmp_path / "one", ["--data.init_args.tasks_per_batch", "4"])
    one = torch.load(tmp_path / "one/rank0.pt", weights_only=False)["state"]
    for r in (0, 1):
        ddp = torch.load(tmp_path / f"ddp/rank{r}.pt", weights_only=False)["state"]
        for k in one:
            assert torch.allclose(one[k], ddp[k], atol=2e-6, rtol=1e-5), (r, k)
