"""Unit tests for lemon_pl.models (CPU, tiny sizes, < ~30 s in total)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from lemon_pl.models import FNO, DeepONet, Prose, count_parameters, differentiable_attention
from lemon_pl.models.layers import SpectralConv1d

NX = 32
PAD = 2
VOCAB = 50

PAPER = dict(
    d_model=512,
    n_heads=8,
    dim_ffn=2048,
    n_data_layers=2,
    n_symbol_layers=4,
    n_fusion_layers=8,
    n_decoder_layers=8,
)


def tiny_prose(**kw) -> Prose:
    cfg = dict(
        nx=NX,
        vocab_size=VOCAB,
        pad_id=PAD,
        d_model=16,
        n_heads=2,
        dim_ffn=32,
        n_data_layers=1,
        n_symbol_layers=1,
        n_fusion_layers=1,
        n_decoder_layers=1,
    )
    cfg.update(kw)
    return Prose(**cfg)


def make_model(name: str, input_len: int = 1, output_len: int = 5, **kw):
    if name == "prose":
        return tiny_prose(input_len=input_len, output_len=output_len, **kw)
    if name == "prose_notext":
        return tiny_prose(input_len=input_len, output_len=output_len, no_text=True, **kw)
    if name == "deeponet":
        return DeepONet(nx=NX, input_len=input_len, output_len=output_len, basis_dim=8, hidden=16, trunk_layers=2)
    if name == "fno":
        return FNO(nx=NX, input_len=input_len, output_len=output_len, modes=6, width=12, n_layers=2, proj_hidden=16)
    raise KeyError(name)


MODELS = ["prose", "prose_notext", "deeponet", "fno"]


def make_tokens(b: int = 3, length: int = 7, n_valid=(7, 4, 1), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(PAD + 1, VOCAB, (b, length), generator=g)
    mask = torch.zeros(b, length, dtype=torch.bool)
    for i, n in enumerate(n_valid):
        mask[i, n:] = True
    tokens = tokens.masked_fill(mask, PAD)
    return tokens, mask


def make_batch(b=3, n_in=1, n_out=5, nx=NX, seed=0):
    g = torch.Generator().manual_seed(seed)
    u_in = torch.randn(b, n_in, nx, generator=g)
    t_in = torch.arange(n_in, dtype=torch.float32) / 32.0
    t_out = (2 * torch.arange(n_out, dtype=torch.float32) + 1) / 32.0
    tokens, mask = make_tokens(b)
    return u_in, t_in, t_out, tokens, mask


# --------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n_in", [1, 2])
def test_output_shape_and_uses_equation(name, n_in):
    torch.manual_seed(0)
    model = make_model(name, input_len=n_in)
    u_in, t_in, t_out, tokens, mask = make_batch(n_in=n_in)
    out = model(u_in, t_in, t_out, tokens, mask)
    assert out.shape == (3, 5, NX)
    assert torch.isfinite(out).all()
    # batched (B, n) times give the same result as shared (n,) times
    out_b = model(u_in, t_in.expand(3, n_in), t_out.expand(3, 5), tokens, mask)
    torch.testing.assert_close(out, out_b)
    assert model.uses_equation == (name == "prose")
    assert type(model).uses_equation == (name != "deeponet" and name != "fno")


def test_prose_derives_mask_from_pad_id():
    torch.manual_seed(0)
    model = tiny_prose().eval()
    u_in, t_in, t_out, tokens, mask = make_batch()
    torch.testing.assert_close(model(u_in, t_in, t_out, tokens, mask), model(u_in, t_in, t_out, tokens))


def test_prose_padding_invariance_and_token_sensitivity():
    torch.manual_seed(0)
    model = tiny_prose().eval()
    u_in, t_in, t_out, tokens, mask = make_batch()
    ref = model(u_in, t_in, t_out, tokens, mask)

    # changing tokens at padded positions (mask passed explicitly) changes nothing
    junk = tokens.clone()
    junk[mask] = torch.randint(PAD + 1, VOCAB, (int(mask.sum()),))
    torch.testing.assert_close(model(u_in, t_in, t_out, junk, mask), ref)

    # changing a real token of sample 1 changes sample 1 only
    changed = tokens.clone()
    changed[1, 0] = PAD + 1 if tokens[1, 0] != PAD + 1 else PAD + 2
    out = model(u_in, t_in, t_out, changed, mask)
    assert (out[1] - ref[1]).abs().max() > 1e-4
    torch.testing.assert_close(out[[0, 2]], ref[[0, 2]])


def test_prose_batch_matches_unpadded_single_samples():
    """Each padded sample in a batch equals that sample run alone without padding."""
    torch.manual_seed(0)
    model = tiny_prose().eval()
    u_in, t_in, t_out, tokens, mask = make_batch()
    out = model(u_in, t_in, t_out, tokens, mask)
    for i, n in enumerate((7, 4, 1)):
        single = model(u_in[i : i + 1], t_in, t_out, tokens[i : i + 1, :n])
        torch.testing.assert_close(out[i : i + 1], single, atol=1e-5, rtol=1e-4)


def test_prose_fully_padded_row_is_finite():
    torch.manual_seed(0)
    model = tiny_prose().eval()
    u_in, t_in, t_out, tokens, mask = make_batch()
    mask[2] = True
    tokens[2] = PAD
    out = model(u_in, t_in, t_out, tokens, mask)
    assert torch.isfinite(out).all()
    assert torch.isfinite(model.encode_symbols(tokens, mask)).all()
    # the empty equation is still sensitive to nothing but the data
    torch.testing.assert_close(model(u_in, t_in, t_out, tokens.masked_fill(mask, 7), mask), out)


def test_prose_encode_symbols_shape():
    model = tiny_prose()
    tokens, mask = make_tokens()
    assert model.encode_symbols(tokens, mask).shape == (3, 7, 16)
    assert model.encode_symbols(tokens).shape == (3, 7, 16)


def test_prose_no_text_ignores_tokens():
    torch.manual_seed(0)
    model = tiny_prose(no_text=True).eval()
    assert not hasattr(model, "symbol_encoder") and not hasattr(model, "fusion")
    u_in, t_in, t_out, tokens, mask = make_batch()
    ref = model(u_in, t_in, t_out)
    torch.testing.assert_close(model(u_in, t_in, t_out, tokens, mask), ref)
    torch.testing.assert_close(model(u_in, t_in, t_out, torch.randint(3, VOCAB, (3, 11))), ref)


def test_prose_submodule_names():
    names = {n for n, _ in tiny_prose().named_children()}
    assert names == {"embedder", "data_encoder", "symbol_encoder", "fusion", "decoder"}
    assert {n for n, _ in tiny_prose(no_text=True).named_children()} == {"embedder", "data_encoder", "decoder"}
    # every attention projection is an nn.Linear (LoRA-wrappable)
    for _, mod in tiny_prose().named_modules():
        assert not isinstance(mod, torch.nn.MultiheadAttention)


def test_prose_decoder_queries_are_independent():
    """No self-attention among queries: output at a time doesn't depend on the others."""
    torch.manual_seed(0)
    model = tiny_prose().eval()
    u_in, t_in, t_out, tokens, mask = make_batch()
    full = model(u_in, t_in, t_out, tokens, mask)
    part = model(u_in, t_in, t_out[2:3], tokens, mask)
    torch.testing.assert_close(full[:, 2:3], part)


# ------------------------------------------------------------ parameter counts
def test_prose_paper_parameter_count():
    with torch.device("meta"):
        full = Prose(**PAPER)
        no_text = Prose(**PAPER, no_text=True)
    n_full, n_nt = count_parameters(full), count_parameters(no_text)
    assert abs(n_full - 71.10e6) / 71.10e6 < 0.03, n_full
    assert abs(n_nt - 32.71e6) / 32.71e6 < 0.03, n_nt
    per_block = {n: count_parameters(m) for n, m in full.named_children()}
    for name, ref in (("data_encoder", 6.31e6), ("symbol_encoder", 13.17e6), ("fusion", 25.22e6)):
        assert abs(per_block[name] - ref) / ref < 0.01, (name, per_block[name])


def test_deeponet_parameter_count():
    n = count_parameters(DeepONet())
    assert abs(n - 6.80e6) / 6.80e6 < 0.01, n


def test_count_parameters_trainable_only():
    model = make_model("deeponet")
    total = count_parameters(model)
    model.trunk.requires_grad_(False)
    frozen = sum(p.numel() for p in model.trunk.parameters())
    assert count_parameters(model, trainable_only=True) == total - frozen


# ------------------------------------------------------------------------ FNO
def test_spectral_conv_drops_modes_above_cutoff():
    torch.manual_seed(0)
    n, modes = 64, 6
    conv = SpectralConv1d(3, 4, modes)
    x = torch.arange(n, dtype=torch.float32) / n
    for k in (modes, modes + 3, n // 2):
        wave = torch.cos(2 * math.pi * k * x) + torch.sin(2 * math.pi * k * x)
        inp = wave.view(1, n, 1).expand(2, n, 3).contiguous()
        assert conv(inp).abs().max() < 1e-5
    # while a mode below the cutoff passes through
    low = torch.cos(2 * math.pi * (modes - 1) * x).view(1, n, 1).expand(2, n, 3).contiguous()
    assert conv(low).abs().max() > 1e-3


def test_spectral_conv_is_shift_equivariant():
    torch.manual_seed(0)
    conv = SpectralConv1d(3, 5, 8)
    x = torch.randn(2, 64, 3)
    for s in (1, 7, 33):
        torch.testing.assert_close(conv(torch.roll(x, s, dims=1)), torch.roll(conv(x), s, dims=1), atol=1e-5, rtol=1e-4)


def test_fno_is_resolution_agnostic():
    torch.manual_seed(0)
    model = FNO(nx=128, input_len=2, output_len=5, modes=16, width=8, n_layers=2)
    t_in, t_out = torch.zeros(2), torch.rand(5)
    for n in (64, 128, 256):
        assert model(torch.randn(2, 2, n), t_in, t_out).shape == (2, 5, n)
    # the same band-limited signal sampled at two resolutions gives consistent outputs
    x64 = torch.arange(64) / 64
    x256 = torch.arange(256) / 256
    f = lambda x: torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x)  # noqa: E731
    u64 = f(x64).view(1, 1, -1).expand(1, 2, 64)
    u256 = f(x256).view(1, 1, -1).expand(1, 2, 256)
    out64, out256 = model(u64, t_in, t_out), model(u256, t_in, t_out)
    # grid points shared by both resolutions; the x-coordinate channel and the
    # pointwise nonlinearities make this only approximately equal
    assert (out256[..., ::4] - out64).abs().max() < 0.1 * out64.abs().max() + 1e-3


def test_fno_rejects_wrong_output_count():
    model = make_model("fno", output_len=5)
    with pytest.raises(ValueError, match="output_len"):
        model(torch.randn(2, 1, NX), torch.zeros(1), torch.rand(4))


# ------------------------------------------------- functional_call / torch.func
@pytest.mark.parametrize("name", MODELS)
def test_functional_grad_matches_backward(name):
    torch.manual_seed(0)
    model = make_model(name, input_len=2)
    u_in, t_in, t_out, tokens, mask = make_batch(n_in=2)
    target = torch.randn(3, 5, NX)

    model.zero_grad()
    F.mse_loss(model(u_in, t_in, t_out, tokens, mask), target).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}

    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_fn(p):
        out = functional_call(model, p, (u_in, t_in, t_out), {"tokens": tokens, "token_pad_mask": mask})
        return F.mse_loss(out, target)

    grads = grad(loss_fn)(params)
    assert grads.keys() == ref.keys()
    for n in ref:
        torch.testing.assert_close(grads[n], ref[n], atol=1e-6, rtol=1e-4, msg=n)


@pytest.mark.parametrize("name", MODELS)
def test_second_order_maml_gradient(name):
    """grad of a post-inner-step loss (true second-order MAML) matches finite differences."""
    torch.manual_seed(0)
    model = make_model(name).double()
    u_in, t_in, t_out, tokens, mask = make_batch()
    u_in = u_in.double()
    target = torch.randn(3, 5, NX, dtype=torch.float64)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_fn(p):
        out = functional_call(model, p, (u_in, t_in, t_out), {"tokens": tokens, "token_pad_mask": mask})
        return F.mse_loss(out, target)

    def outer(p):
        g = grad(loss_fn)(p)
        return loss_fn({n: p[n] - 0.1 * g[n] for n in p})

    with differentiable_attention():
        meta = grad(outer)(params)
        direction = {n: torch.randn_like(v) for n, v in params.items()}
        eps = 1e-6
        plus = outer({n: params[n] + eps * direction[n] for n in params})
        minus = outer({n: params[n] - eps * direction[n] for n in params})
    fd = (plus - minus) / (2 * eps)
    analytic = sum((meta[n] * direction[n]).sum() for n in params)
    torch.testing.assert_close(analytic, fd, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------- training
def _smooth_batch(b=4, n_in=1, n_out=5):
    x = torch.arange(NX) / NX
    phase = torch.linspace(0, 2, b).view(b, 1, 1)
    t_in = torch.arange(n_in, dtype=torch.float32) / 32
    t_out = (2 * torch.arange(n_out, dtype=torch.float32) + 1) / 32
    u_in = torch.sin(2 * math.pi * (x - t_in.view(1, -1, 1)) + phase)
    y = torch.exp(-t_out.view(1, -1, 1)) * torch.sin(2 * math.pi * (x - t_out.view(1, -1, 1)) + phase)
    return u_in, t_in, t_out, y


@pytest.mark.parametrize("name", MODELS)
def test_model_trains(name):
    torch.manual_seed(0)
    model = make_model(name)
    u_in, t_in, t_out, y = _smooth_batch()
    tokens, mask = make_tokens(4, n_valid=(7, 4, 1, 5))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.mse_loss(model(u_in, t_in, t_out, tokens, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_forward(name):
    torch.manual_seed(0)
    model = make_model(name)
    u_in, t_in, t_out, tokens, mask = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(u_in, t_in, t_out, tokens, mask)
    assert out.shape == (3, 5, NX) and torch.isfinite(out.float()).all()


def test_key_padding_mask_never_fully_masks_a_row():
    from lemon_pl.models.layers import key_padding_to_attn_mask

    pad = torch.tensor([[False, True, True], [True, True, True], [False, False, False]])
    m = key_padding_to_attn_mask(pad, ensure_one_valid=True)
    assert m.shape == (3, 1, 1, 3) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[True, False, False], [True, False, False], [True, True, True]]
    assert key_padding_to_attn_mask(pad)[1].sum() == 0  # without the guard the row is empty


@pytest.mark.parametrize("name", MODELS)
def test_every_network_states_the_contract(name):
    """models/base.py: an OperatorNetwork whose decoder_parts are real submodules and whose
    data-derived arguments are exactly those it uses (no vocab_size/pad_id without an equation)."""
    import inspect

    from lemon_pl.models import DATA_ARGUMENTS, OperatorNetwork, taken_arguments

    net = make_model(name)
    assert isinstance(net, OperatorNetwork)
    assert isinstance(net.uses_equation, bool) and net.uses_equation == (name == "prose")
    children = {n for n, _ in net.named_children()} | {n for n, _ in net.named_parameters(recurse=False)}
    assert net.decoder_parts and set(net.decoder_parts) <= children
    names = net.decoder_parameter_names()
    assert names and len(names) < len(list(net.parameters()))
    takes = set(inspect.signature(type(net)).parameters) & set(DATA_ARGUMENTS)
    reads_tokens = name.startswith("prose")
    assert ("vocab_size" in takes) == reads_tokens and ("pad_id" in takes) == reads_tokens
    assert set(taken_arguments(type(net), {k: 1 for k in DATA_ARGUMENTS})) == takes


def test_mlp_maps_a_field_on_its_grid_and_refuses_another_grid():
    import torch

    from lemon_pl.models import MLP

    net = MLP(nx=32, hidden=[16, 16])
    t = torch.zeros(1)
    u = torch.randn(3, 1, 32, requires_grad=True)
    out = net(u, t, t + 1)
    assert out.shape == (3, 1, 32)
    out[1].sum().backward()  # samples do not mix: only sample 1's input gets a gradient
    assert u.grad[1].abs().sum() > 0 and u.grad[0].abs().sum() == 0 and u.grad[2].abs().sum() == 0
    with pytest.raises(ValueError, match="tied to its grid"):
        net(torch.randn(3, 1, 64), t, t + 1)
