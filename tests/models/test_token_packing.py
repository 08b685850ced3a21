"""Packed tokens: the per-token maps run on real tokens only, with the padded batch's results."""

from __future__ import annotations

import copy

import pytest
import torch

from lemon_pl.models import Prose
from lemon_pl.models.layers import TokenPacking, differentiable_attention

PAD = 2


def _batch(lengths=(9, 4, 7, 9, 1), width=9, nx=16, n_out=5, seed=0, repeat=None):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 60, (len(lengths), width), generator=g)
    pad = torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]
    tokens = tokens.masked_fill(pad, PAD)
    if repeat is not None:  # several trajectories per operator (sharing and packing together)
        tokens, pad = tokens.repeat_interleave(repeat, 0), pad.repeat_interleave(repeat, 0)
    b = tokens.shape[0]
    u = torch.randn(b, 1, nx, generator=g, dtype=torch.float64)
    t_out = torch.rand(b, n_out, generator=g, dtype=torch.float64)
    target = torch.randn(b, n_out, nx, generator=g, dtype=torch.float64)
    return u, torch.zeros(1), t_out, tokens, pad, target


def _net(pack: bool, share: bool = False) -> Prose:
    torch.manual_seed(0)
    return Prose(nx=16, vocab_size=64, d_model=32, n_heads=4, dim_ffn=64, n_data_layers=1, n_symbol_layers=2,
                 n_fusion_layers=2, n_decoder_layers=2, share_equation=share, pack_tokens=pack).double()


def _loss_and_grads(net, batch):
    u, t_in, t_out, tokens, pad, target = batch
    out = net(u, t_in, t_out, tokens, pad)
    loss = ((out - target) ** 2).mean()
    return out.detach(), torch.autograd.grad(loss, list(net.parameters()))


def _assert_same(net_a, net_b, batch):
    out_a, g_a = _loss_and_grads(net_a, batch)
    out_b, g_b = _loss_and_grads(net_b, batch)
    assert torch.isfinite(out_a).all()
    torch.testing.assert_close(out_a, out_b, rtol=1e-12, atol=1e-12)
    for (name, _), a, b in zip(net_a.named_parameters(), g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13, msg=f"gradient of {name}")


@pytest.mark.parametrize("share,repeat", [(False, None), (True, 3)])
def test_packed_tokens_give_the_padded_outputs_and_gradients(share, repeat):
    batch = _batch(repeat=repeat)
    _assert_same(_net(True, share), _net(False, share), batch)


def test_a_row_made_only_of_padding_gives_the_padded_result():
    _assert_same(_net(True), _net(False), _batch(lengths=(5, 0, 3), width=5))


def test_one_equation_broadcast_over_the_batch_is_packed_too():
    u, t_in, t_out, tokens, pad, target = _batch(lengths=(6, 6, 6, 6), width=9)
    one = (u, t_in, t_out, tokens[:1], pad[:1], target)
    _assert_same(_net(True), _net(False), one)


def test_the_per_token_maps_see_real_tokens_only():
    net = _net(True)
    rows = {}
    for name in ("symbol_encoder", "fusion"):
        fc1 = getattr(net, name).encoder.layers[0].ffn.fc1
        fc1.register_forward_pre_hook(lambda m, args, name=name: rows.__setitem__(name, args[0].numel() // args[0].shape[-1]))
    kv = net.decoder.layers[0].cross_attn.k_proj
    kv.register_forward_pre_hook(lambda m, args: rows.__setitem__("decoder memory", args[0].numel() // args[0].shape[-1]))
    lengths = (9, 4, 7, 9, 1)
    u, t_in, t_out, tokens, pad, _ = _batch(lengths=lengths)
    net(u, t_in, t_out, tokens, pad)
    real, n_in = sum(lengths), u.shape[1]
    assert rows == {"symbol_encoder": real, "fusion": real + len(lengths) * n_in,
                    "decoder memory": real + len(lengths) * n_in}
    # off: the padded rows are computed
    net.pack_tokens = False
    net(u, t_in, t_out, tokens, pad)
    assert rows["symbol_encoder"] == tokens.numel()


def test_packing_is_off_under_vmap_and_results_agree():
    net = _net(True)
    plain = _net(False)
    u, t_in, t_out, tokens, pad, _ = _batch(lengths=(6, 3), width=7)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def one(p, u1, tq, tok, pm):
        return torch.func.functional_call(net, p, (u1[None], t_in, tq[None], tok[None], pm[None]))[0]

    with differentiable_attention():
        out = torch.func.vmap(one, in_dims=(None, 0, 0, 0, 0))(params, u, t_out, tokens, pad)
    torch.testing.assert_close(out, plain(u, t_in, t_out, tokens, pad).detach(), rtol=1e-12, atol=1e-12)


def test_pack_unpack_round_trip_puts_zeros_at_padding():
    valid = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    x = torch.arange(9 * 2, dtype=torch.float64).reshape(3, 3, 2)
    packing = TokenPacking(valid)
    assert packing.n == 5 and packing.saves
    packed = packing.pack(x)
    torch.testing.assert_close(packed, x[valid])
    torch.testing.assert_close(packing.unpack(packed), x * valid[..., None])
    assert not TokenPacking(torch.ones(2, 3, dtype=torch.bool)).saves


def test_pack_tokens_is_a_constructor_flag_and_copies():
    net = _net(False)
    assert net.pack_tokens is False and copy.deepcopy(net).pack_tokens is False
    assert _net(True).pack_tokens is True
