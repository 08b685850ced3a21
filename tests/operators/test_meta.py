"""Meta-learning: inner-loop gradients, learned rates, LeMONS, and the MetaModule step."""

from __future__ import annotations

import math

import pytest
import torch

from lemon_pl.adaptation.functional import call, select_parameters
from lemon_pl.adaptation.maml import adapt
from lemon_pl.adaptation.tasks import task_view
from lemon_pl.models import Prose, differentiable_attention
from lemon_pl.operators.meta import MetaModule

torch.set_default_dtype(torch.float32)


def tiny_prose(dtype=torch.float32):
    torch.manual_seed(0)
    net = Prose(nx=16, d_model=8, n_heads=2, dim_ffn=16, n_data_layers=1, n_symbol_layers=1, n_fusion_layers=1,
                n_decoder_layers=1)
    return net.to(dtype)


def task_batch(n_tasks=3, k=6, nx=16, n_out=4, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(4, 70, (n_tasks, 7), generator=g)
    toks[0, 5:] = 2  # some padding
    return {
        "u_in": torch.randn(n_tasks, k, 1, nx, generator=g, dtype=dtype),
        "u_out": torch.randn(n_tasks, k, n_out, nx, generator=g, dtype=dtype),
        "mean": torch.zeros(n_tasks, k, dtype=dtype), "std": torch.ones(n_tasks, k, dtype=dtype),
        "t_in": torch.zeros(n_tasks, 1, dtype=dtype), "t_out": torch.linspace(0.1, 1.9, n_out, dtype=dtype).repeat(n_tasks, 1),
        "tokens": toks, "token_pad_mask": toks == 2,
        "family": torch.arange(n_tasks), "operator": torch.arange(n_tasks),
    }


def _loss(net, params, view):
    pred = call(net, params, view["u_in"], view["t_in"], view["t_out"], view["tokens"], view["token_pad_mask"])
    return ((pred - view["u_out"]) ** 2).mean()


def _views(batch, t=0):
    sup = task_view(batch, t, torch.arange(0, 3))
    qry = task_view(batch, t, torch.arange(3, 6))
    return sup, qry


def test_second_order_meta_gradient_matches_finite_differences():
    net = tiny_prose(torch.float64)
    batch = task_batch(dtype=torch.float64)
    sup, qry = _views(batch)
    names = select_parameters(net, "all")
    theta = {n: p.detach().clone() for n, p in net.named_parameters()}

    def outer(params, first_order):
        fast = adapt(net, params, names, lambda p: _loss(net, p, sup), steps=2, lr=0.1, first_order=first_order)
        return _loss(net, {**params, **fast}, qry)

    with differentiable_attention():
        params = {n: v.clone().requires_grad_(True) for n, v in theta.items()}
        grads = torch.autograd.grad(outer(params, first_order=False), list(params.values()))
        g = torch.Generator().manual_seed(3)
        direction = {n: torch.randn(v.shape, generator=g, dtype=v.dtype) for n, v in theta.items()}
        eps = 1e-5
        with torch.no_grad():
            pass
        plus = outer({n: (theta[n] + eps * direction[n]).requires_grad_(True) for n in theta}, True).detach()
        # the first-order flag only changes gradients, not values: evaluate values with create_graph off
        minus = outer({n: (theta[n] - eps * direction[n]).requires_grad_(True) for n in theta}, True).detach()
    fd = (plus - minus) / (2 * eps)
    analytic = sum((gr * direction[n]).sum() for gr, n in zip(grads, theta))
    assert float(abs(fd - analytic)) < 1e-6 * max(1.0, float(abs(fd)))
    # and the first-order gradient is measurably different (the check has power)
    params = {n: v.clone().requires_grad_(True) for n, v in theta.items()}
    fo = torch.autograd.grad(outer(params, first_order=True), list(params.values()))
    fo_dir = sum((gr * direction[n]).sum() for gr, n in zip(fo, theta))
    assert abs(float(fo_dir - analytic)) > 1e-4 * abs(float(analytic))


def test_first_order_equals_hand_computed_update():
    net = tiny_prose()
    batch = task_batch()
    sup, qry = _views(batch)
    names = select_parameters(net, ["decoder"])
    params = dict(net.named_parameters())
    lr = 0.05
    fast = adapt(net, params, names, lambda p: _loss(net, p, sup), steps=1, lr=lr, first_order=True)
    # by hand: w' = w - lr * dL_s/dw for decoder weights, everything else unchanged
    g_s = torch.autograd.grad(_loss(net, params, sup), [params[n] for n in names])
    for n, g in zip(names, g_s):
        assert torch.allclose(fast[n], params[n] - lr * g, atol=1e-7)
    # FOMAML meta-gradient = query gradient at the adapted weights
    _loss(net, {**params, **fast}, qry).backward()
    manual = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    for n, g in zip(names, g_s):
        manual[n] = (params[n] - lr * g).detach().requires_grad_(True)
    expected = torch.autograd.grad(_loss(net, manual, qry), [manual[n] for n in params])
    for (n, p), e in zip(params.items(), expected):
        assert torch.allclose(p.grad, e, atol=1e-6), n
    assert all(not n.startswith("decoder") for n in params if n not in names)


def test_learned_per_tensor_rates_receive_gradient():
    module = MetaModule(tiny_prose(), inner_lr="learned", inner_steps=1, support_size=3, query_size=3)
    assert len(module.log_lrs) == len(module.fast_names)
    assert all(math.isclose(float(v.detach().exp()), 0.01, rel_tol=1e-6) for v in module.log_lrs.values())
    total, n = module.meta_loss(task_batch())
    total.backward()
    grads = [v.grad for v in module.log_lrs.values()]
    assert n == 3 and all(g is not None for g in grads) and any(float(g.abs()) > 0 for g in grads)


@pytest.mark.parametrize("with_prose", [True, False])
def test_lemons_rate_depends_on_the_equation_and_learns(with_prose):
    from lemon_pl.models import FNO

    net = tiny_prose() if with_prose else FNO(nx=16, input_len=1, output_len=4, modes=4, width=8, n_layers=1)
    module = MetaModule(net, inner_lr="learned_symbolic", inner_steps=1, support_size=3, query_size=3)
    if with_prose:  # the network's own symbol encoder is outer-loop only
        assert not any(n.startswith("symbol_encoder") for n in module.fast_names)
        assert module.lr_symbol_encoder is None
    batch = task_batch()
    lr0 = module.symbolic_lr(batch["tokens"], batch["token_pad_mask"])
    assert torch.allclose(lr0, torch.full_like(lr0, 0.01))  # zero-initialised head: every task at inner_lr_init
    torch.manual_seed(5)
    for m in module.lr_head.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.1)
    lrs = module.symbolic_lr(batch["tokens"], batch["token_pad_mask"])
    assert lrs.shape == (3,) and float(lrs.max() - lrs.min()) > 1e-4 and float(lrs.max()) < 0.02
    # padding does not change the rate
    padded = torch.cat([batch["tokens"], torch.full((3, 4), 2)], dim=1)
    assert torch.allclose(module.symbolic_lr(padded, padded == 2), lrs, atol=1e-6)
    total, _ = module.meta_loss(batch)
    total.backward()
    head_grad = sum(float(p.grad.abs().sum()) for p in module.lr_head.parameters())
    enc = module.net.symbol_encoder if with_prose else module.lr_symbol_encoder
    enc_grad = sum(float(p.grad.abs().sum()) for p in enc.parameters() if p.grad is not None)
    assert head_grad > 0 and enc_grad > 0


def test_meta_loss_leaves_module_weights_untouched_and_is_deterministic():
    module = MetaModule(tiny_prose(), inner_steps=3, support_size=3, query_size=3)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    a, _ = module.meta_loss(task_batch())
    b, _ = module.meta_loss(task_batch())
    assert torch.equal(a, b)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="inner_lr"):
        MetaModule(tiny_prose(), inner_lr="adaptive")
    with pytest.raises(ValueError, match="adapt"):
        MetaModule(tiny_prose(), adapt=["nonexistent"])
    module = MetaModule(tiny_prose(), support_size=5, query_size=5)
    with pytest.raises(ValueError, match="K=6"):
        module.meta_loss(task_batch())


def test_meta_training_can_start_from_another_stage_checkpoint(tmp_path):
    """``init_from`` loads a (pretraining) checkpoint's network; a different network is refused."""
    from lemon_pl.core.errors import CheckpointMismatchError

    source = tiny_prose()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.5)
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    module = MetaModule(tiny_prose(), inner_lr="learned_symbolic", init_from=str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(module.net.state_dict()[k], v), k
    other = Prose(nx=16, d_model=12, n_heads=2, dim_ffn=16, n_data_layers=1, n_symbol_layers=1, n_fusion_layers=1,
                  n_decoder_layers=1)
    with pytest.raises(CheckpointMismatchError, match="different model"):
        MetaModule(other, init_from=str(path))
