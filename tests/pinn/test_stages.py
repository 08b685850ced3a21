"""The physics-informed stages: batched losses, phase 2's frozen tensors, MAML/Reptile over μ
tasks, time-marching, evaluation files, and the stages through ``lemon-pl fit`` / ``test``."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from lemon_pl.cli import main
from lemon_pl.pinn.stages import HyperLRPINNAdapt, MetaPINNModule, PINNModule, TimeMarchingPINN
from lemon_pl.pinn.collocation import CollocationDataModule, select_mu
from lemon_pl.pinn.networks import PINN, PINNP, HyperLRPINN, NaiveLRPINN
from tests.conftest import CONFIGS

SMALL = dict(n_grid=[32, 20], n_collocation=64, n_ic=16, n_bc=8, n_test=64)
SMALL_ARGS = ["--data.init_args.n_grid", "[32,20]", "--data.init_args.n_collocation", "64", "--data.init_args.n_ic",
              "16", "--data.init_args.n_bc", "8", "--data.init_args.n_test", "64", "--trainer.enable_progress_bar",
              "false", "--data.init_args.steps_per_epoch", "2", "--trainer.check_val_every_n_epoch", "1"]


def data(mu, **kw) -> CollocationDataModule:
    return CollocationDataModule(mu=mu, **{**SMALL, **kw})


def trainer(tmp_path, steps: int) -> Trainer:
    return Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0,
                   default_root_dir=tmp_path, accelerator="cpu")


def stage(net, dm, cls=PINNModule, **kw):
    return cls(net, problem=dm.problem, mu_values=dm.mu_values, **kw)


def test_batched_loss_over_mu_equals_the_mean_of_per_mu_losses():
    torch.manual_seed(0)
    dm = data([[30, 0, 0], [35, 0, 0], [40, 1, 2]])
    m = stage(HyperLRPINN(), dm)
    batch = dm.train_batch()
    total = m.total_loss(m.loss_terms(m.field(mu=batch["mu"]), batch))
    grads = torch.autograd.grad(total, list(m.net.parameters()))
    singles = []
    for i in range(3):
        one = select_mu(batch, slice(i, i + 1))
        singles.append(m.total_loss(m.loss_terms(m.field(mu=one["mu"]), one)))
    mean = torch.stack(singles).mean()
    torch.testing.assert_close(total, mean, rtol=1e-5, atol=1e-6)
    for g, h in zip(grads, torch.autograd.grad(mean, list(m.net.parameters()))):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


def test_a_network_without_mu_input_trains_one_mu_per_run():
    dm = data([[30, 0, 0], [35, 0, 0]])
    with pytest.raises(ValueError, match="reads no PDE parameters"):
        stage(PINN(), dm)
    stage(PINNP(), dm)  # PINN-P reads mu
    with pytest.raises(ValueError, match="no low-rank bases"):
        stage(PINNP(), dm, orth_weight_u=1.0)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("rank", ["full", "adaptive"])
def test_phase_2_trains_exactly_s_and_the_dense_layers_and_leaves_phase_1_untouched(tmp_path, rank):
    torch.manual_seed(0)
    dm1 = data([[30, 0, 0], [40, 0, 0]])
    p1 = stage(HyperLRPINN(), dm1, orth_weight_u=0.0016, orth_weight_v=0.0016)
    t1 = trainer(tmp_path, 3)
    t1.fit(p1, dm1)
    ckpt = tmp_path / "phase1.ckpt"
    t1.save_checkpoint(ckpt)
    before = _sha(ckpt)
    phase1 = {k: v.clone() for k, v in p1.net.state_dict().items()}

    dm2 = data([[35, 0, 0]])
    p2 = stage(HyperLRPINN(), dm2, HyperLRPINNAdapt, init_from=str(ckpt), rank=rank)
    net = p2.net
    assert isinstance(net, NaiveLRPINN)
    trainable = sorted(n for n, p in net.named_parameters() if p.requires_grad)
    assert trainable == ["first.bias", "first.weight", "last.bias", "last.weight",
                         "layers.0.s", "layers.1.s", "layers.2.s"]
    if rank == "full":
        assert p2.n_trainable == 351
    else:
        assert p2.n_trainable <= 351
    s0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        s_hyper = p1.net.diagonals(torch.tensor([35.0, 0, 0]))[0]
    for i, layer in enumerate(net.layers):
        keep = slice(None) if rank == "full" else s_hyper[i] > 0
        torch.testing.assert_close(layer.s.detach(), s_hyper[i][keep], rtol=0, atol=0)  # starts at s(mu)
    trainer(tmp_path, 4).fit(p2, dm2)
    after = dict(p2.net.named_parameters())
    for n, p in after.items():
        if p.requires_grad:
            assert not torch.equal(p.detach(), s0[n]), f"{n} did not train"
        else:
            assert torch.equal(p.detach(), s0[n]), f"{n} changed"
    for i, layer in enumerate(p2.net.layers):  # frozen bases are phase 1's, bit for bit
        keep = slice(None) if rank == "full" else s_hyper[i] > 0
        assert torch.equal(layer.U.detach(), phase1[f"layers.{i}.U"][:, keep])
        assert torch.equal(layer.V.detach(), phase1[f"layers.{i}.V"][:, keep])
    assert _sha(ckpt) == before  # the phase-1 checkpoint, hypernetwork included, is untouched


def test_phase_2_needs_one_target_mu_and_a_hyper_lr_pinn():
    with pytest.raises(ValueError, match="one target"):
        stage(HyperLRPINN(), data([[30, 0, 0], [31, 0, 0]]), HyperLRPINNAdapt)
    with pytest.raises(ValueError, match="adapts a HyperLRPINN"):
        stage(PINN(), data([[30, 0, 0]]), HyperLRPINNAdapt)


def test_maml_inner_loop_on_all_tasks_at_once_equals_adapting_each_task_alone():
    from torch.func import functional_call

    from lemon_pl.adaptation.maml import adapt

    torch.manual_seed(1)
    dm = data([[1, 0, 0], [5, 0, 0], [2, 1, 1]])
    m = stage(NaiveLRPINN(rank=5), dm, MetaPINNModule, inner_steps=2, inner_lr=1e-2)
    batch = dm.train_batch()
    params = dict(m.net.named_parameters())
    stacked = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in params.items()}
    fast = adapt(m.net, stacked, list(stacked),
                 lambda p: 3 * m.total_loss(m.loss_terms(m.task_field(p, 3), batch)), 2, 1e-2)
    for i in range(3):
        one = select_mu(batch, slice(i, i + 1))

        def loss(p, one=one):
            return m.total_loss(m.loss_terms(lambda x, idx: functional_call(m.net, p, (x,)).reshape(-1), one))

        alone = adapt(m.net, params, list(params), loss, 2, 1e-2)
        for k in params:
            torch.testing.assert_close(fast[k][i], alone[k], rtol=1e-4, atol=1e-6)


def test_reptile_moves_the_weights_towards_the_mean_adapted_weights():
    torch.manual_seed(2)
    dm = data([[1, 0, 0], [3, 0, 0]])
    m = stage(NaiveLRPINN(rank=4), dm, MetaPINNModule, algorithm="reptile", inner_steps=1, inner_lr=1e-2)
    m.ensure_finite = lambda *a: None
    m.log = lambda *a, **k: None
    batch = dm.train_batch()
    loss = m.training_step(batch, 0)
    grads = torch.autograd.grad(loss, list(m.net.parameters()))
    # one inner SGD step per task: w' = w - lr g_m, so w - mean(w') = lr * mean(g_m)
    per_task = []
    for i in range(2):
        one = select_mu(batch, slice(i, i + 1))
        lt = m.total_loss(PINNModule.loss_terms(m, lambda x, idx: m.net(x).reshape(-1), one))
        per_task.append(torch.autograd.grad(lt, list(m.net.parameters())))
    for g, g0, g1 in zip(grads, *per_task):  # w - (w - lr g) rounds at fp32's resolution of w
        expect = 1e-2 * (g0 + g1) / 2
        torch.testing.assert_close(g, expect, rtol=1e-3, atol=1e-7)
        assert float((g - expect).norm()) < 1e-3 * float(expect.norm()) + 1e-7


def test_time_marching_trains_segments_in_order_from_the_previous_prediction(tmp_path):
    torch.manual_seed(3)
    dm = data([[1, 0, 0]])
    m = stage(PINN(width=8, hidden_layers=1), dm, TimeMarchingPINN, segments=2, lr=1e-2)
    first = {k: v.clone() for k, v in m.net[1].state_dict().items()}
    trainer(tmp_path, 4).fit(m, dm)
    assert int(m.segment) == 1  # the second half of the steps trained segment 2
    assert any(not torch.equal(first[k], v) for k, v in m.net[1].state_dict().items())
    # the piecewise field uses segment 1's network before t = 0.5 and segment 2's after
    pts = torch.tensor([[1.0, 0.25], [1.0, 0.75]])
    u = m.field()(pts, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(u[0], m.net[0](pts[:1]).reshape(()))
    torch.testing.assert_close(u[1], m.net[1](pts[1:]).reshape(()))


def _fit_and_test(tmp_path, config: str, *extra: str, name: str = "run") -> tuple:
    common = ["--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", name,
              *SMALL_ARGS, *extra]
    assert main(["fit", "--config", str(CONFIGS / config), "--trainer.max_steps", "4", *common]) == 0
    fit_dir = tmp_path / name / "version_0"
    assert main(["test", "--config", str(CONFIGS / config), "--ckpt_path", str(fit_dir / "checkpoints/last.ckpt"),
                 *common]) == 0
    return fit_dir, tmp_path / name / "version_1"


def test_pinn_fit_and_test_write_the_table_predictions_and_figures(tmp_path, capsys):
    fit_dir, test_dir = _fit_and_test(tmp_path, "pinn/pinn.yaml", "--data.init_args.mu", "[30,0,0]")
    summary = json.loads((fit_dir / "fit_summary.json").read_text())
    assert summary["trainable_params"] == 10401 and len(summary["val_curve"]) == 2
    payload = json.loads((test_dir / "test_metrics.json").read_text())
    row = payload["families"]["beta=30,nu=0,rho=0"]
    assert set(row) == {"rel_l2", "mae", "max_err", "explained_variance", "residual_rms"}
    with np.load(test_dir / "predictions.npz") as z:
        assert z["u_pred"].shape == z["u_ref"].shape == z["residual"].shape == (1, 20, 32)
        assert list(z["param_names"]) == ["beta", "nu", "rho"] and z["x"].shape == (32,) and z["t"].shape == (20,)
        # the reported error is the error of the saved prediction at the test points' grid nodes
        dm = data([[30, 0, 0]])
        b = dm.build()
        xi = np.abs(z["x"][None, :] - b["x_test"][:, :1]).argmin(1)  # the test points are grid nodes
        ti = np.abs(z["t"][None, :] - b["x_test"][:, 1:]).argmin(1)
        err = z["u_pred"][0, ti, xi] - b["u_test"][0]
        assert abs(np.linalg.norm(err) / np.linalg.norm(b["u_test"][0]) - row["rel_l2"]) < 1e-5
    assert (test_dir / "figures" / "field_beta=30_nu=0_rho=0.png").exists()
    assert "beta=30,nu=0,rho=0" in capsys.readouterr().out


def test_hyper_lr_pinn_phase_1_then_adaptive_phase_2_through_the_cli(tmp_path):
    p1_fit, p1_test = _fit_and_test(tmp_path, "pinn/hyper_lr_pinn.yaml", "--data.init_args.preset", "null",
                                    "--data.init_args.mu", "[[30,0,0],[40,0,0]]", "--model.init_args.rank_sweep",
                                    "[20,50,10]", name="p1")
    assert (p1_test / "figures" / "ranks_vs_mu.png").exists() and (p1_test / "figures" / "s_heatmap.png").exists()
    with np.load(p1_test / "predictions.npz") as z:
        assert z["sweep_s"].shape == (4, 3, 50)
    _, p2_test = _fit_and_test(tmp_path, "pinn/hyper_lr_pinn_adapt.yaml", "--data.init_args.mu", "[35,0,0]",
                               "--model.init_args.rank", "adaptive", "--model.init_args.init_from",
                               str(p1_fit / "checkpoints/last.ckpt"), name="p2")
    payload = json.loads((p2_test / "test_metrics.json").read_text())
    assert payload["trainable_params"] <= 351 and "beta=35,nu=0,rho=0" in payload["families"]



@pytest.mark.slow
def test_lbfgs_from_the_config_beats_adam_in_as_many_steps(tmp_path):
    errs = {}
    for name, extra in (("adam", []), ("lbfgs", ["--config", str(CONFIGS / "optim/lbfgs.yaml")])):
        _, test_dir = _fit_and_test(tmp_path, "pinn/pinn.yaml", *extra, "--data.init_args.mu", "[1,0,0]", name=name)
        errs[name] = json.loads((test_dir / "test_metrics.json").read_text())["families"]["overall"]["rel_l2"]
    assert errs["lbfgs"] < 0.5 * errs["adam"], errs


def test_bad_pinn_settings_are_one_line_errors(tmp_path, capsys):
    code = main(["fit", "--config", str(CONFIGS / "pinn/pinn.yaml"), "--data.init_args.preset", "table2_convection",
                 "--data.init_args.mu", "null", "--trainer.logger.init_args.save_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lemon-pl: error:") and "reads no PDE parameters" in err[0]
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_pinn_learns_low_beta_convection_to_a_few_percent(tmp_path):
    torch.manual_seed(0)
    dm = CollocationDataModule(mu=[[1, 0, 0]], steps_per_epoch=500)
    m = stage(PINN(), dm, lr=1e-3)
    t = Trainer(max_steps=3000, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0, accelerator="cpu",
                check_val_every_n_epoch=6, default_root_dir=tmp_path)
    t.fit(m, dm)
    (res,) = t.test(m, dm, verbose=False)
    assert res["test/rel_l2"] < 0.05, res


def test_a_single_mu_checkpoint_refuses_another_mu_in_one_line(tmp_path, capsys):
    common = ["--trainer.logger.init_args.save_dir", str(tmp_path), *SMALL_ARGS]
    assert main(["fit", "--config", str(CONFIGS / "pinn/pinn.yaml"), "--data.init_args.mu", "[30,0,0]",
                 "--trainer.max_steps", "2", *common]) == 0
    capsys.readouterr()
    code = main(["test", "--config", str(CONFIGS / "pinn/pinn.yaml"), "--data.init_args.mu", "[35,0,0]",
                 "--ckpt_path", str(tmp_path / "pinn/version_0/checkpoints/last.ckpt"), *common])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "beta=30,nu=0,rho=0" in err[0] and "--data.init_args.mu" in err[0], err
