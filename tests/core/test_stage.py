"""The optimiser policy every stage shares (``lemon_pl.core.stage.Stage``): parameter groups with
their own rates reach a configured optimiser exactly, a plateau schedule watches its monitored
metric, a stage's default optimiser/schedule can be replaced, ``load_init`` loads weights, and a
published report is logged under the names of ``EvaluationReport.logged``."""

from __future__ import annotations

import functools
import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lemon_pl.core.report import EvaluationReport
from lemon_pl.core.stage import Stage


class TwoRateNet(nn.Module):
    """A body and a head; the network declares the head's own rate."""

    def __init__(self, head_lr: float = 0.5):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)
        self.head_lr = head_lr

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))

    def parameter_groups(self):
        return [{"params": list(self.head.parameters()), "lr": self.head_lr}]


class Tiny(Stage):
    """A regression stage on a fixed batch; ``val/plateau`` is whatever ``val_values`` says."""

    def __init__(self, net: nn.Module, optimizer=None, lr_scheduler=None, monitor=None, lr: float = 0.1,
                 weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8, warmup_ratio: float = 0.0,
                 min_lr_ratio: float = 1.0, val_values=()):
        super().__init__(optimizer, lr_scheduler, monitor)
        self.save_hparams()
        self.net = net
        self.val_values = list(val_values)
        self.seen_lrs: list[list[float]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.ensure_finite(loss, batch, batch_idx)
        return loss

    def on_train_epoch_start(self):
        self.seen_lrs.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])

    def validation_step(self, batch, batch_idx):
        value = self.val_values[min(self.current_epoch, len(self.val_values) - 1)] if self.val_values else 0.0
        self.log("val/plateau", value)
        self.log("val/rel_l2", value)


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=n)


def _trainer(tmp_path, **kw):
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0, **kw)


def test_a_configured_optimizer_gets_the_network_groups_with_their_own_rates(tmp_path):
    torch.manual_seed(0)
    net = TwoRateNet(head_lr=0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # what jsonargparse builds from {class_path: torch.optim.SGD, init_args: {lr: 0.01}}
    stage = Tiny(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    groups = stage.parameter_groups()
    assert [g.get("lr") for g in groups] == [0.5, None]  # the head's own rate, then every other parameter
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in net.parameters()}

    # the one step, by hand: SGD with 0.5 on the head and the configured 0.01 on the body
    x, y = next(iter(_data()))
    ref = TwoRateNet()
    ref.load_state_dict(before)
    nn.functional.mse_loss(ref(x), y).backward()
    want = {f"head.{k}": before[f"head.{k}"] - 0.5 * p.grad for k, p in ref.head.named_parameters()}
    want |= {f"body.{k}": before[f"body.{k}"] - 0.01 * p.grad for k, p in ref.body.named_parameters()}

    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(stage, _data())
    opt = stage.trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD) and [g["lr"] for g in opt.param_groups] == [0.5, 0.01]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=1e-7)


def test_the_default_adamw_keeps_each_group_rate_and_decays_matrices_only(tmp_path):
    stage = Tiny(TwoRateNet(head_lr=0.5), lr=0.1, weight_decay=0.2)
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(stage, _data())
    opt = stage.trainer.optimizers[0]
    assert isinstance(opt, torch.optim.AdamW)
    got = sorted((g["initial_lr"], g["weight_decay"], tuple(p.ndim for p in g["params"])) for g in opt.param_groups)
    assert got == [(0.1, 0.0, (1,)), (0.1, 0.2, (2,)), (0.5, 0.0, (1,)), (0.5, 0.2, (2,))]


@pytest.mark.parametrize("how", ["scheduler", "stage"])
def test_a_plateau_schedule_lowers_the_rate_when_the_monitored_metric_stalls(tmp_path, how):
    from lightning.pytorch.cli import ReduceLROnPlateau

    if how == "scheduler":  # the class names its metric (lightning.pytorch.cli.ReduceLROnPlateau)
        sched, monitor = functools.partial(ReduceLROnPlateau, monitor="val/plateau", factor=0.5, patience=1), None
    else:  # torch's class, the stage's monitor setting
        sched = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=1)
        monitor = "val/plateau"
    # the metric improves for 3 epochs, then stalls: patience 1 -> halved after the 2nd stalled epoch
    stage = Tiny(nn.Linear(3, 1), optimizer=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=sched,
                 monitor=monitor, val_values=[3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    _trainer(tmp_path, max_epochs=7).fit(stage, _data(), _data())
    lrs = [round(lr[0], 12) for lr in stage.seen_lrs]
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]
    config = stage.trainer.lr_scheduler_configs[0]
    assert config.monitor == "val/plateau" and config.interval == "epoch"


def test_a_plateau_schedule_watches_val_rel_l2_by_default(tmp_path):
    sched = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=0)
    stage = Tiny(nn.Linear(3, 1), optimizer=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=sched,
                 val_values=[1.0, 1.0, 1.0, 1.0])
    _trainer(tmp_path, max_epochs=4).fit(stage, _data(), _data())
    assert stage.trainer.lr_scheduler_configs[0].monitor == "val/rel_l2"
    assert [round(lr[0], 12) for lr in stage.seen_lrs] == [0.1, 0.1, 0.05, 0.025]  # patience 0: halved per stall


class AdamNoSchedule(Tiny):
    """A stage whose own default is Adam(lr) and a constant rate (what the PINN stages use)."""

    def default_optimizer(self, groups):
        return torch.optim.Adam(groups, lr=self.hparams.lr)

    def default_scheduler(self, optimizer, total_steps):
        return None


def test_a_stage_replaces_the_default_optimizer_and_schedule(tmp_path):
    stage = AdamNoSchedule(nn.Linear(3, 1), lr=0.03)
    _trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(stage, _data())
    opt = stage.trainer.optimizers[0]
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 0.03
    assert stage.trainer.lr_scheduler_configs == []
    plain = Tiny(nn.Linear(3, 1), lr=0.03, min_lr_ratio=0.0)  # the base default: AdamW + warm-up cosine
    _trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(plain, _data())
    assert type(plain.trainer.optimizers[0]) is torch.optim.AdamW
    assert type(plain.trainer.lr_scheduler_configs[0].scheduler).__name__ == "WarmupCosine"


def test_load_init_loads_the_network_of_another_stage_checkpoint(tmp_path):
    from lemon_pl.core.errors import CheckpointMismatchError

    torch.manual_seed(1)
    source = Tiny(TwoRateNet())
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(source, _data())
    trainer.save_checkpoint(tmp_path / "source.ckpt")
    torch.manual_seed(2)
    target = Tiny(TwoRateNet())
    assert not torch.equal(target.net.body.weight, source.net.body.weight)
    state = target.load_init(tmp_path / "source.ckpt")
    for k, v in source.net.state_dict().items():
        assert torch.equal(target.net.state_dict()[k], v) and torch.equal(state[k], v)
    with pytest.raises(CheckpointMismatchError):
        Tiny(nn.Linear(3, 1)).load_init(tmp_path / "source.ckpt")


def test_a_published_report_is_kept_and_logged_under_its_names(tmp_path):
    class Reporting(Tiny):
        def validation_step(self, batch, batch_idx):
            pass

        def on_validation_epoch_end(self):
            rows = {"a": {"rel_l2": 0.25}, "overall": {"rel_l2": 0.5, "mse": math.nan}}
            self.publish_report(EvaluationReport("val", "family", rows))

    stage = Reporting(nn.Linear(3, 1))
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(stage, _data(), _data())
    assert stage.reports["val"].rows["a"] == {"rel_l2": 0.25}
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/rel_l2")}
    assert logged == {"val/rel_l2/a": 0.25, "val/rel_l2": 0.5}  # NaN metrics are not logged
