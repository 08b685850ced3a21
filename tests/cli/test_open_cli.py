"""The CLI runs any LightningModule / LightningDataModule; data-derived links reach only the
constructors that take them; optimiser and schedule come from the config (L-BFGS included)."""

from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lemon_pl.cli import main
from tests.conftest import CONFIGS


class CurveData(pl.LightningDataModule):
    """Points (x, mu) -> u = sin(mu * x): a coordinate-and-parameter problem, not operator data."""

    model_links = ("in_dim", "mu_range")

    def __init__(self, n: int = 256, mu_low: float = 1.0, mu_high: float = 2.0, batch_size: int = 64, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 1, generator=g) * 2 * math.pi
        mu = mu_low + (mu_high - mu_low) * torch.rand(n, 1, generator=g)
        self.inputs, self.targets = torch.cat([x, mu], 1), torch.sin(mu * x)
        self.batch_size = batch_size
        self.in_dim = 2
        self.mu_range = [mu_low, mu_high]

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.inputs, self.targets), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.inputs, self.targets), batch_size=len(self.inputs))


class CoordinateMLP(pl.LightningModule):
    """u(x, mu) by an MLP; takes ``in_dim`` from the data but not ``mu_range``."""

    def __init__(self, in_dim: int = 1, hidden: int = 16, optimizer: OptimizerCallable | None = None,
                 lr_scheduler: LRSchedulerCallable | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/rel_l2", (self.net(x) - y).norm() / y.norm())

    def configure_optimizers(self):
        from lemon_pl.core.optim import build_optimizers

        hp = type("HP", (), {"lr": 1e-2, "weight_decay": 0.0, "betas": (0.9, 0.999), "eps": 1e-8,
                              "warmup_ratio": 0.0, "min_lr_ratio": 1.0})
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return build_optimizers(list(self.parameters()), hp, total, self.optimizer_factory, self.lr_scheduler_factory)

    def on_fit_end(self):
        out = self.trainer.log_dir + "/result.json"
        with torch.no_grad():
            x, y = self.trainer.datamodule.inputs, self.trainer.datamodule.targets
            rel = float((self.net(x) - y).norm() / y.norm())
        with open(out, "w") as fh:
            json.dump({"in_dim": self.hparams.in_dim, "rel_l2": rel, "optimizer": type(self.optimizers().optimizer
                                                                                       if hasattr(self.optimizers(), "optimizer")
                                                                                       else self.optimizers()).__name__}, fh)


def _write_config(tmp_path, optimizer: dict | None, steps: int) -> str:
    import yaml

    cfg = {
        "seed_everything": 3,
        "trainer": {"max_steps": steps, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "check_val_every_n_epoch": 1,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": str(tmp_path / "runs"), "name": "curve"}}},
        "model": {"class_path": "tests.cli.test_open_cli.CoordinateMLP", "init_args": {"hidden": 16}},
        "data": {"class_path": "tests.cli.test_open_cli.CurveData", "init_args": {"n": 128, "batch_size": 128}},
    }
    if optimizer:
        cfg["model"]["init_args"].update(optimizer)
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _result(tmp_path, version: int = 0) -> dict:
    return json.loads((tmp_path / f"runs/curve/version_{version}/result.json").read_text())


def test_a_new_kind_of_stage_and_data_module_run_through_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", _write_config(tmp_path, None, 60)]) == 0
    res = _result(tmp_path)
    assert res["in_dim"] == 2  # linked from the data module (the model's own default is 1)
    assert res["optimizer"] == "AdamW"
    assert res["rel_l2"] < 1.0
    saved = (tmp_path / "runs/curve/version_0/config.yaml").read_text()
    assert "CoordinateMLP" in saved and "mu_range" not in saved.split("model:")[1].split("data:")[0]


def test_lbfgs_from_the_config_trains(tmp_path, monkeypatch):
    """L-BFGS (closure-based, needs Lightning's automatic optimisation) chosen in the config of any
    LightningModule is the optimiser that runs and lowers the error (the one L-BFGS-versus-Adam
    comparison is the physics-informed one, tests/pinn/test_stages.py, slow tier)."""
    monkeypatch.chdir(tmp_path)
    lbfgs = {"optimizer": {"class_path": "torch.optim.LBFGS",
                           "init_args": {"lr": 1.0, "max_iter": 20, "line_search_fn": "strong_wolfe"}},
             "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.ConstantLR", "init_args": {"factor": 1.0}}}
    assert main(["fit", "--config", _write_config(tmp_path, lbfgs, 10)]) == 0
    with_lbfgs = _result(tmp_path, 0)
    assert with_lbfgs["optimizer"] == "LBFGS" and with_lbfgs["rel_l2"] < 0.3, with_lbfgs  # 10 AdamW steps: > 0.36


def test_operator_stage_takes_an_optimizer_from_the_config(tiny_root, tmp_path, monkeypatch):
    """The operator stages accept optimizer / lr_scheduler too; total_steps reaches WarmupCosine."""
    from lemon_pl.cli.lightning import LemonCLI

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(tiny_root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", "heat", "--data.init_args.batch_size", "8",
            "--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "16",
            "--model.init_args.net.init_args.n_heads", "2",
            "--model.init_args.optimizer", "torch.optim.SGD", "--model.init_args.optimizer.lr", "0.05",
            "--model.init_args.lr_scheduler", "lemon_pl.core.optim.WarmupCosine",
            "--model.init_args.lr_scheduler.warmup_ratio", "0.5",
            "--trainer.max_steps", "4", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
            "--trainer.enable_progress_bar", "false"]
    cli = LemonCLI(args=args)
    opt = cli.trainer.optimizers[0]
    sched = cli.trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(opt, torch.optim.SGD) and sched.total_steps == 4 and sched.warmup == 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * sched.factor(4))


@pytest.mark.parametrize("net,takes", [("Prose", True), ("DeepONet", False), ("FNO", False)])
def test_links_reach_only_networks_that_take_them(net, takes, tiny_root, tmp_path, monkeypatch):
    from lemon_pl.cli.lightning import LemonCLI

    monkeypatch.chdir(tmp_path)
    cli = LemonCLI(args=["--config", str(CONFIGS / "pretrain.yaml"),
                         "--config", str(CONFIGS / f"model/{net.lower()}.yaml"),
                         "--data.init_args.root", str(tiny_root), "--data.init_args.preset", "tiny",
                         "--data.init_args.train_families", "heat", "--data.init_args.output_step", "4"],
                   run=False)
    built = cli.model.net
    assert type(built).__name__ == net
    assert built.output_len == 16  # linked: 64 frames, every 4th after the first
    assert hasattr(built, "pad_id") == takes
    net_cfg = cli.config.model.init_args.net.init_args
    assert ("vocab_size" in net_cfg) == takes
    assert cli.model.hparams.unit == "sample" and cli.model.train_families == ["heat"]


def test_defaults_compose_before_the_file_and_are_not_saved(tmp_path):
    from lemon_pl.cli.lightning import compose_defaults

    argv = compose_defaults(["fit", "--config", str(CONFIGS / "meta.yaml"), "--config", "x.yaml"])
    i = argv.index(str(CONFIGS / "meta.yaml"))
    assert argv[:3] == ["fit", "--model", "lemon_pl.operators.MetaModule"]
    # meta.yaml's defaults: configs/operators/base.yaml, whose own defaults come first
    assert argv[4].endswith("model/prose.yaml") and argv[6].endswith("callbacks/default.yaml")
    assert argv[8].endswith("operators/base.yaml") and i == 10
    assert argv[-2:] == ["--config", "x.yaml"]
    loop = tmp_path / "a.yaml"
    loop.write_text("defaults: [a.yaml]\n")
    with pytest.raises(ValueError, match="include it again"):
        compose_defaults(["fit", "--config", str(loop)])
