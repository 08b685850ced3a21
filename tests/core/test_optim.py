"""The default AdamW: fused where it applies, same updates as PyTorch's per-parameter loop."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lemon_pl.core.optim import adamw_impl, build_optimizers, decay_groups, default_adamw

HP = SimpleNamespace(lr=1e-2, weight_decay=1e-2, betas=(0.9, 0.999), eps=1e-6, warmup_ratio=0.0, min_lr_ratio=0.0)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3))


def _train(model, opt, steps=6):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 7, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_default_is_fused_on_cpu_and_foreach_with_a_grad_scaler():
    params = list(_model().parameters())
    assert adamw_impl(params) == {"fused": True}
    assert adamw_impl(params, grad_scaler=True) == {"foreach": True}
    assert adamw_impl([torch.zeros(2, dtype=torch.long)]) == {"foreach": True}  # not floating point
    opt = build_optimizers(params, HP, total_steps=10)["optimizer"]
    assert all(g["fused"] for g in opt.param_groups)
    # a configured optimiser is used as given
    opt = build_optimizers(params, HP, 10, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))["optimizer"]
    assert isinstance(opt, torch.optim.SGD)


@pytest.mark.parametrize("impl", [{"fused": True}, {"foreach": True}])
def test_fused_and_foreach_match_the_per_parameter_loop(impl):
    loop, other = _model(), _model()
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6)
    ref = _train(loop, torch.optim.AdamW(decay_groups(loop.parameters(), 1e-2), foreach=False, **kw))
    got = _train(other, torch.optim.AdamW(decay_groups(other.parameters(), 1e-2), **impl, **kw))
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # and the update did something (a no-op optimiser would also "match")
    assert max(float((a - p.detach()).abs().max()) for a, p in zip(ref, _model().parameters())) > 1e-3


def test_default_adamw_takes_groups_or_parameters():
    m = _model()
    assert default_adamw(decay_groups(m.parameters(), 0.1), lr=1e-3).param_groups[0]["fused"]
    assert default_adamw(list(m.parameters()), lr=1e-3).param_groups[0]["fused"]


@pytest.mark.parametrize("choice, key, value", [("loop", "foreach", False), ("foreach", "foreach", True),
                                                ("fused", "fused", True)])
def test_the_stage_setting_chooses_the_implementation(choice, key, value):
    hp = SimpleNamespace(**vars(HP), adamw=choice)
    opt = build_optimizers(list(_model().parameters()), hp, total_steps=10)["optimizer"]
    assert opt.param_groups[0][key] is value
    with pytest.raises(ValueError, match="adamw must be one of"):
        adamw_impl([], choice="fast")


def test_operator_module_rejects_an_unknown_adamw():
    from lemon_pl.models import DeepONet
    from lemon_pl.operators.pretrain import PretrainModule

    with pytest.raises(ValueError, match="model.init_args.adamw"):
        PretrainModule(DeepONet(nx=16, output_len=4), adamw="fast")
