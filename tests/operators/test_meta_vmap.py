"""Tasks adapted in parallel with torch.func.vmap equal the Python loop over tasks."""

from __future__ import annotations

import pytest
import torch

from lemon_pl.adaptation.functional import call, select_parameters
from lemon_pl.adaptation.maml import adapt
from lemon_pl.adaptation.maml_vmap import vmap_meta_loss
from lemon_pl.adaptation.tasks import task_view, task_views
from lemon_pl.models import differentiable_attention
from lemon_pl.operators.meta import MetaModule
from tests.operators.test_meta import task_batch, tiny_prose


def _grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _assert_close(loop, vm, rtol=1e-5):
    (la, ga), (lb, gb) = loop, vm
    assert torch.allclose(la, lb, rtol=1e-6, atol=1e-7), (float(la), float(lb))
    assert set(ga) == set(gb)
    scale = max(float(g.abs().max()) for g in ga.values())
    for n in ga:
        err = float((ga[n] - gb[n]).abs().max())
        assert err <= rtol * scale, (n, err, scale)


def _both(module, batch):
    out = []
    for fn in (lambda: module.meta_loss(batch), lambda: module.vmap_meta_loss(batch)):
        module.zero_grad(set_to_none=True)
        total, n = fn()
        assert n == batch["u_in"].shape[0]
        (total / n).backward()
        out.append((total.detach(), _grads(module)))
    return out


@pytest.mark.parametrize("first_order", [True, False])
def test_vmap_meta_loss_equals_the_loop_over_tasks(first_order):
    torch.manual_seed(0)
    module = MetaModule(tiny_prose(), inner_steps=2, support_size=3, query_size=3, first_order=first_order,
                        inner_lr_init=0.05)
    _assert_close(*_both(module, task_batch()))


@pytest.mark.parametrize("inner_lr", ["learned", "learned_symbolic"])
def test_vmap_learned_rates_get_the_loop_gradients(inner_lr):
    module = MetaModule(tiny_prose(), inner_lr=inner_lr, inner_steps=2, support_size=3, query_size=3,
                        inner_grad_clip=0.5)
    if inner_lr == "learned_symbolic":  # make the rate differ between tasks
        torch.manual_seed(5)
        for m in module.lr_head.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=0.1)
    loop, vm = _both(module, task_batch())
    _assert_close(loop, vm)
    rates = [n for n in loop[1] if n.startswith(("log_lrs", "lr_head"))]
    assert rates and any(float(vm[1][n].abs().max()) > 0 for n in rates)


def test_vmap_meta_loss_direct_call_with_a_subset_of_fast_weights():
    """The plain function on stacked tensors against ``adapt`` task by task (decoder adapts only)."""
    net = tiny_prose()
    batch = task_batch(n_tasks=2)
    names = select_parameters(net, ["decoder"])
    sup_idx = torch.tensor([[0, 1, 2], [3, 4, 5]])
    qry_idx = torch.tensor([[3, 4, 5], [0, 1, 2]])
    support, query = task_views(batch, sup_idx), task_views(batch, qry_idx)

    def loss(params, view):
        pred = call(net, params, view["u_in"], view["t_in"], view["t_out"], view["tokens"], view["token_pad_mask"])
        return ((pred - view["u_out"]) ** 2).mean()

    params = dict(net.named_parameters())
    total = 0.0
    for t in range(2):
        sup = task_view(batch, t, sup_idx[t])
        qry = task_view(batch, t, qry_idx[t])
        fast = adapt(net, params, names, lambda p: loss(p, sup), steps=3, lr=0.1, first_order=True)
        total = total + loss({**params, **fast}, qry)
    expected = torch.autograd.grad(total, list(params.values()))
    with differentiable_attention():
        got_total = vmap_meta_loss(net, params, names, support, query, steps=3, lr=0.1, first_order=True)
    got = torch.autograd.grad(got_total, list(params.values()))
    assert torch.allclose(total, got_total, rtol=1e-6)
    for n, a, b in zip(params, expected, got):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4), n
    with differentiable_attention():
        per_task = vmap_meta_loss(net, params, names, support, query, steps=3, lr=0.1, reduction="none")
    assert per_task.shape == (2,) and torch.allclose(per_task.sum(), got_total)
    # no adaptation: the query losses at the shared weights
    with differentiable_attention():
        zero_shot = vmap_meta_loss(net, params, names, support, query, steps=0, lr=0.1, reduction="none")
    expected = torch.stack([loss(params, task_view(batch, t, qry_idx[t])) for t in range(2)])
    assert torch.allclose(zero_shot, expected, rtol=1e-5)
