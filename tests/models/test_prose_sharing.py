"""The equation encoded once per operator: same outputs and gradients as encoding every sample."""

from __future__ import annotations

import copy

import pytest
import torch

from lemon_pl.models import Prose
from lemon_pl.models.layers import differentiable_attention


def _batch(groups=(3, 1, 4), length=9, nx=16, n_out=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = sum(groups)
    rows = []
    for i, n in enumerate(groups):
        row = torch.randint(3, 60, (length,), generator=g)
        row[length - 2 - i % 3:] = 2  # different lengths, padded with PAD_ID
        rows += [row] * n
    tokens = torch.stack(rows)
    u = torch.randn(b, 1, nx, generator=g)
    t_out = torch.rand(b, n_out, generator=g)
    target = torch.randn(b, n_out, nx, generator=g)
    return u, torch.zeros(1), t_out, tokens, tokens == 2, target


def _net(share: bool) -> Prose:
    torch.manual_seed(0)
    return Prose(nx=16, vocab_size=64, d_model=32, n_heads=4, dim_ffn=64, n_data_layers=1, n_symbol_layers=2,
                 n_fusion_layers=1, n_decoder_layers=1, share_equation=share).double()


def _loss_and_grads(net, batch):
    u, t_in, t_out, tokens, pad, target = batch
    out = net(u.double(), t_in, t_out, tokens, pad)
    loss = ((out - target.double()) ** 2).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return out.detach(), grads


def test_shared_encoding_matches_per_sample_outputs_and_gradients():
    batch = _batch()
    shared, plain = _net(True), _net(False)
    out_s, g_s = _loss_and_grads(shared, batch)
    out_p, g_p = _loss_and_grads(plain, batch)
    torch.testing.assert_close(out_s, out_p, rtol=1e-12, atol=1e-12)
    for (name, _), a, b in zip(shared.named_parameters(), g_s, g_p):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")
    # the symbol-encoder weights do get a gradient (the gather's backward sums over samples)
    assert float(dict(zip([n for n, _ in shared.named_parameters()], g_s))["symbol_encoder.token_embed.weight"]
                 .abs().sum()) > 0


def test_the_symbol_encoder_runs_once_per_distinct_equation():
    seen = []
    net = _net(True)
    net.symbol_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    u, t_in, t_out, tokens, pad, _ = _batch(groups=(3, 1, 4))
    net(u.double(), t_in, t_out, tokens, pad)
    assert seen == [3]
    # same tokens but a different mask are different rows (the mask is part of the key)
    pad2 = pad.clone()
    pad2[0, 0] = True
    seen.clear()
    net(u.double(), t_in, t_out, tokens, pad2)
    assert seen == [4]
    # all distinct: the batch is encoded as it is
    seen.clear()
    u, t_in, t_out, tokens, pad, _ = _batch(groups=(1, 1, 1))
    net(u.double(), t_in, t_out, tokens, pad)
    assert seen == [3]


def test_sharing_is_off_under_vmap_and_results_agree():
    net = _net(True)
    plain = copy.deepcopy(net)
    plain.share_equation = False
    u, t_in, t_out, tokens, pad, _ = _batch(groups=(2, 2))
    params = dict(net.named_parameters())

    def one(u1, t1, tok1, pad1, model):
        return torch.func.functional_call(model, params, (u1, t_in, t1, tok1, pad1))

    stack = lambda x: x.reshape(2, 2, *x.shape[1:])  # noqa: E731 - two "tasks" of two samples
    args = (stack(u.double()), stack(t_out), stack(tokens), stack(pad))
    with differentiable_attention():
        out = torch.func.vmap(lambda a, b, c, d: one(a, b, c, d, net))(*args)
        ref = torch.func.vmap(lambda a, b, c, d: one(a, b, c, d, plain))(*args)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("share", [True, False])
def test_share_equation_is_a_constructor_flag(share):
    assert _net(share).share_equation is share
