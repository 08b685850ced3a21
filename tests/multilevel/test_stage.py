"""The multi-level stage: weights handed on exactly, per-level schedule, finest-level scoring, resume."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch

from lemon_pl.cli import main
from lemon_pl.models import FNO, MLP
from lemon_pl.multilevel.stage import MultilevelRegression
from lemon_pl.multilevel.data import MultilevelDataModule
from tests.conftest import CONFIGS

LEVELS = [32, 64]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    assert main(["generate", "--root", str(root), "--preset", "tiny", "--families", "schrodinger", "--levels",
                 "32,64", "--no-progress"]) == 0
    return root


def _parts(root, net=None, native=False, epochs=(2, 2), n=(48, 16)):
    dm = MultilevelDataModule(str(root), "schrodinger", LEVELS, list(n), list(epochs), steps_per_epoch=3,
                              batch_size=8, native=native, seed=0)
    net = net or MLP(nx=dm.nx, hidden=[16, 16])
    return dm, MultilevelRegression(net, lr=[1e-2, 3e-3], level_epochs=dm.level_epochs, data_stats=dm.data_stats,
                                    data_summary=dm.data_summary)  # the links of the CLI


def _trainer(tmp_path, callbacks=(), **kw):
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(tmp_path), num_sanity_val_steps=0, callbacks=list(callbacks),
                      enable_checkpointing=False, max_epochs=-1, **kw)


class _Spy(pl.Callback):
    """The net's weights, the optimiser state size and the lr at each level's first batch."""

    def __init__(self):
        self.at_level_start = {}
        self.after_epoch = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        level = module.level_at_epoch(trainer.current_epoch)
        if batch_idx == 0 and trainer.current_epoch == module.level_start(level):
            opt = trainer.optimizers[0]
            self.at_level_start[level] = ({k: v.clone() for k, v in module.net.state_dict().items()},
                                          len(opt.state), None)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        level = module.level_at_epoch(trainer.current_epoch)
        if batch_idx == 0 and trainer.current_epoch == module.level_start(level):
            w, n_state, _ = self.at_level_start[level]
            self.at_level_start[level] = (w, n_state, trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, module):
        self.after_epoch[trainer.current_epoch] = {k: v.clone() for k, v in module.net.state_dict().items()}


def test_weights_are_handed_on_exactly_and_each_level_starts_afresh(root, tmp_path):
    torch.manual_seed(0)
    dm, module = _parts(root)
    spy = _Spy()
    trainer = _trainer(tmp_path, [spy])
    trainer.fit(module, datamodule=dm)
    assert trainer.current_epoch == 4  # the schedule (2 + 2 epochs) set the run's length
    end_of_level1 = spy.after_epoch[1]
    start_of_level2, n_state, lr = spy.at_level_start[1]
    for k in end_of_level1:
        assert torch.equal(end_of_level1[k], start_of_level2[k]), k  # bit-identical hand-off
    assert any(not torch.equal(spy.at_level_start[0][0][k], end_of_level1[k]) for k in end_of_level1)  # it trained
    assert n_state == 0  # the optimiser's moments were reset at the new level
    assert spy.at_level_start[0][2] == pytest.approx(1e-2) and lr == pytest.approx(3e-3)  # each level's own lr
    assert sorted(module.level_results) == [0, 1]
    assert [r["level"] for r in module.history] == [0, 0, 1, 1]


def test_every_level_is_scored_on_the_finest_validation_set(root):
    dm, _ = _parts(root)
    dm.setup("fit")
    assert dm._eval["val"].y.shape[-1] == 64 and dm._train[0].y.shape[-1] == 64  # labels interpolated
    assert dm._train[0].x.shape[0] == 48 and dm._train[1].x.shape[0] == 16
    assert dm.budget == pytest.approx(48 * dm.level_costs[0] + 16 * dm.level_costs[1])
    skipped, _ = _parts(root, epochs=(0, 2), n=(0, 16))  # a level left out costs nothing (its cost is unread)
    skipped.setup("fit")
    assert skipped.budget == pytest.approx(16 * skipped.level_costs[1])
    native, _ = _parts(root, native=True)
    native.setup("fit")
    assert native._train[0].x.shape[-1] == 32 and native._eval["val"].x.shape[-1] == 64


def test_native_levels_train_a_resolution_agnostic_network(root, tmp_path):
    dm, module = _parts(root, net=FNO(nx=64, input_len=1, output_len=1, modes=8, width=8, n_layers=2),
                        native=True, epochs=(1, 1))
    _trainer(tmp_path).fit(module, datamodule=dm)
    assert len(module.history) == 2
    dm, module = _parts(root, native=True, epochs=(1, 1))
    with pytest.raises(ValueError, match="tied to its grid"):
        _trainer(tmp_path).fit(module, datamodule=dm)


@pytest.mark.parametrize("kw,needle", [({"n_samples": [4]}, "1 values for 2 levels"),
                                       ({"n_samples": [0, 0], "epochs": [0, 0]}, "nothing would train"),
                                       ({"interpolation": "harmonic"}, "interpolation")])
def test_bad_schedules_are_refused(root, kw, needle):
    args = {"root": str(root), "family": "schrodinger", "levels": LEVELS, "n_samples": [8, 8], "epochs": [1, 1],
            **kw}
    with pytest.raises(ValueError, match=needle):
        MultilevelDataModule(**args)


def _cli(root, out, *extra):
    return main(["fit", "--config", str(CONFIGS / "multilevel/schrodinger.yaml"),
                 "--config", str(CONFIGS / "multilevel/tiny.yaml"), "--data.init_args.root", str(root),
                 "--data.init_args.levels", "[32,64]", "--data.init_args.n_samples", "[32,16]",
                 "--data.init_args.epochs", "[2,2]", "--trainer.enable_progress_bar", "false",
                 "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.version", "0",
                 *extra])


def test_resumed_from_a_level_checkpoint_equals_the_uninterrupted_run(root, tmp_path):
    assert _cli(root, tmp_path / "a") == 0
    run = tmp_path / "a" / "multilevel_schrodinger" / "version_0"
    ckpts = run / "checkpoints"
    assert (ckpts / "level1_n32.ckpt").exists() and (ckpts / "level2_n64.ckpt").exists()
    assert _cli(root, tmp_path / "b", "--ckpt_path", str(ckpts / "level1_n32.ckpt")) == 0
    a = torch.load(ckpts / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "multilevel_schrodinger" / "version_0" / "checkpoints" / "last.ckpt",
                   weights_only=False)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    summary = json.loads((run / "fit_summary.json").read_text())
    assert set(summary["level_val_rel_l2"]) == {"1", "2"} and summary["budget_seconds"] > 0
    assert (run / "figures" / "level_curve.png").exists()


def test_test_writes_the_finest_level_error_and_the_budget(root, tmp_path):
    assert _cli(root, tmp_path) == 0
    ckpt = tmp_path / "multilevel_schrodinger" / "version_0" / "checkpoints" / "last.ckpt"
    code = main(["test", "--config", str(CONFIGS / "multilevel/schrodinger.yaml"),
                 "--config", str(CONFIGS / "multilevel/tiny.yaml"), "--data.init_args.root", str(root),
                 "--data.init_args.levels", "[32,64]", "--data.init_args.n_samples", "[32,16]",
                 "--data.init_args.epochs", "[2,2]", "--trainer.logger.init_args.save_dir", str(tmp_path / "t"),
                 "--ckpt_path", str(ckpt)])
    assert code == 0
    metrics = json.loads(next((tmp_path / "t").rglob("test_metrics.json")).read_text())
    # the reported error is the mean per-sample relative L2 of the checkpoint on the 64-point test split
    from lemon_pl.multilevel.data import read_level

    x, y, *_ = read_level(root / "n64" / "schrodinger" / "test.h5", None, False)
    module = MultilevelRegression.load_from_checkpoint(ckpt, net=MLP(nx=64, hidden=[32, 32]), weights_only=False)
    with torch.no_grad():
        pred = module(torch.as_tensor(x, dtype=torch.float32)[:, None])[:, 0].double()
    yt = torch.as_tensor(y)
    want = float(((pred - yt).norm(dim=1) / (yt.norm(dim=1) + 1e-7)).mean())
    assert metrics["rel_l2"] == pytest.approx(want, rel=1e-4)
    assert metrics["budget_seconds"] == pytest.approx(
        sum(n * c for n, c in zip(metrics["n_samples"], metrics["seconds_per_sample"])))


# ---------------------------------------------------------------------- one core (issue 23)
class PoisonLabels(pl.Callback):
    """A NaN label in the batch at global step LEMON_POISON_STEP (a NaN loss there)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import os

        if trainer.global_step == int(os.environ["LEMON_POISON_STEP"]):
            batch["y"][0, 0, 0] = float("nan")


def test_a_nan_loss_stops_the_curriculum_and_saves_the_last_good_state(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEMON_POISON_STEP", "3")
    assert _cli(root, tmp_path, "--trainer.callbacks+=tests.multilevel.test_stage.PoisonLabels") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("lemon-pl: error: non-finite training loss") and "global step 3" in line
    saved = torch.load(tmp_path / "multilevel_schrodinger" / "version_0" / "checkpoints" / "last.ckpt",
                       weights_only=False)
    assert saved["global_step"] == 3  # the state before the poisoned step
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def _one_step(root, tmp_path, optimizer=None):
    torch.manual_seed(0)
    dm = MultilevelDataModule(str(root), "schrodinger", LEVELS, [16, 8], [1, 1], steps_per_epoch=1, batch_size=8,
                              seed=0)
    net = MLP(nx=dm.nx, hidden=[8])
    module = MultilevelRegression(net, lr=1e-2, level_epochs=dm.level_epochs, data_stats=dm.data_stats,
                                  data_summary=dm.data_summary, optimizer=optimizer)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = next(iter(dm.train_dataloader()))  # level 1's first batch (no trainer yet: epoch 0)
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, datamodule=dm)
    return dm, module, before, first


def test_a_configured_optimizer_is_used_as_configured(root, tmp_path):
    import functools

    dm, sgd, before, batch = _one_step(root, tmp_path, functools.partial(torch.optim.SGD, lr=0.1))
    assert isinstance(sgd.trainer.optimizers[0], torch.optim.SGD)
    assert sgd.trainer.optimizers[0].param_groups[0]["lr"] == 0.1  # not the level schedule's rate
    # the step by hand: w - 0.1 * grad of the standardised MSE on the first batch of level 1
    ref = MLP(nx=dm.nx, hidden=[8])
    ref.load_state_dict(before)
    s = dm.data_stats
    t = torch.zeros(1)
    z = ref((batch["x"] - s["in_mean"]) / s["in_std"], t, t + 1)
    torch.mean((z - (batch["y"] - s["out_mean"]) / s["out_std"]) ** 2).backward()
    for k, p in ref.named_parameters():
        torch.testing.assert_close(sgd.net.state_dict()[k], before[k] - 0.1 * p.grad, rtol=0, atol=1e-7)
    _, adamw, _, _ = _one_step(root, tmp_path)  # the default: AdamW at the level's rate
    assert isinstance(adamw.trainer.optimizers[0], torch.optim.AdamW)
    assert any(not torch.equal(sgd.net.state_dict()[k], v) for k, v in adamw.net.state_dict().items())


def test_a_configured_optimizer_in_a_multilevel_config_is_used(root, tmp_path):
    overlay = tmp_path / "sgd.yaml"
    overlay.write_text("model:\n  init_args:\n    optimizer:\n      class_path: torch.optim.SGD\n"
                       "      init_args: {lr: 0.05, momentum: 0.9}\n")
    assert _cli(root, tmp_path, "--config", str(overlay)) == 0
    ckpt = torch.load(tmp_path / "multilevel_schrodinger" / "version_0" / "checkpoints" / "last.ckpt",
                      weights_only=False)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["lr"] == 0.05  # SGD, at its own rate at the end of the run


def test_the_multilevel_report_comes_from_the_one_writer(root, tmp_path):
    """test_metrics.json of a multi-level test has the schema of every stage's report (the operator
    stages' is checked in tests/test_train.py) and keeps the keys the experiment readers use."""
    from lemon_pl.core.report import EvaluationReport

    assert _cli(root, tmp_path) == 0
    ckpt = tmp_path / "multilevel_schrodinger" / "version_0" / "checkpoints" / "last.ckpt"
    assert main(["test", "--config", str(CONFIGS / "multilevel/schrodinger.yaml"),
                 "--config", str(CONFIGS / "multilevel/tiny.yaml"), "--data.init_args.root", str(root),
                 "--data.init_args.levels", "[32,64]", "--data.init_args.n_samples", "[32,16]",
                 "--data.init_args.epochs", "[2,2]", "--trainer.logger.init_args.save_dir", str(tmp_path / "t"),
                 "--ckpt_path", str(ckpt)]) == 0
    run = next((tmp_path / "t").rglob("test_metrics.json")).parent
    payload = json.loads((run / "test_metrics.json").read_text())
    schema = set(EvaluationReport("test", "family", {}).to_json())
    assert schema == {"stage", "group", "seconds", "metrics", "families"} and schema <= set(payload)
    assert payload["group"] == "family" and payload["metrics"] == ["rel_l2", "rel_l2_median"]
    assert set(payload["families"]) == {"schrodinger"}
    assert payload["families"]["schrodinger"]["rel_l2"] == payload["rel_l2"]
    for key in ("rel_l2_std", "rel_l2_median", "n_test", "budget_seconds", "levels", "n_samples", "family"):
        assert key in payload, key
    assert (run / "test_metrics.csv").read_text().startswith("family,rel_l2,rel_l2_median,")
    assert (run / "figures" / "test_examples.png").exists()
