"""The PINN networks: sizes against the reference, low-rank algebra, batching over μ, the
phase-2 network and the orthogonality penalty."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lemon_pl.pinn.networks import (PINN, PINNP, HyperLRPINN, LowRankLinear, MuScaler, NaiveLRPINN,
                                    orthogonality_penalty)


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def coords_and_mu(n: int = 64, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.stack([2 * torch.pi * torch.rand(n, generator=g), torch.rand(n, generator=g)], -1)
    table = torch.tensor([[30.0, 0.0, 0.0], [35.0, 0.0, 0.0], [40.0, 1.0, 2.0]])
    idx = torch.randint(0, 3, (n,), generator=g)
    return coords.to(dtype), table.to(dtype), idx


# --------------------------------------------------------------------------- sizes


def test_pinn_has_the_reference_10401_parameters():
    net = PINN()
    assert n_params(net) == 10_401  # 2 -> 50 (150), four 50 -> 50 (10,200), 50 -> 1 (51)
    assert isinstance(net.act, torch.nn.Tanh) and len(net.hidden) == 4
    coords, _, _ = coords_and_mu(10)
    assert net(coords).shape == (10, 1)


def test_pinnp_concatenates_mu_to_the_input():
    net = PINNP(mu_dim=3)
    assert n_params(net) == 10_401 + 3 * 50
    coords, table, idx = coords_and_mu(20)
    mu = table[idx]
    expected = net.trunk(torch.cat([coords, mu], -1))
    torch.testing.assert_close(net(coords, mu), expected)
    torch.testing.assert_close(net(coords, table, mu_index=idx), expected)
    one = net(coords, table[1])
    torch.testing.assert_close(one, net(coords, table[1].expand(20, 3)))
    with pytest.raises(ValueError):
        net(coords)


def test_hyper_lr_pinn_release_layout_has_28151_parameters():
    net = HyperLRPINN(layout="release")
    assert n_params(net) == 28_151
    assert n_params(net.first) == 150 and n_params(net.last) == 51
    assert sum(p.numel() for n, p in net.named_parameters() if n.endswith((".U", ".V"))) == 15_000
    assert n_params(net.hyper.embed) == 5_300 and n_params(net.hyper.heads) == 7_650
    assert all(layer.bias is None for layer in net.layers)


def test_hyper_lr_pinn_paper_layout_adds_the_hidden_biases():
    net = HyperLRPINN(layout="paper")
    assert n_params(net) == 28_151 + 3 * 50
    assert all(layer.bias is not None for layer in net.layers)


def test_naive_lr_pinn_matches_table_3_counts_with_frozen_bases():
    # Table 3: r = 10/20/30/40/50 -> 381/411/441/471/501 = s (3r) + hidden biases (150)
    # + W0, b0 (150) + W^{L+1}, b^{L+1} (51): the paper layout with the bases not trained.
    for r, expected in zip((10, 20, 30, 40, 50), (381, 411, 441, 471, 501)):
        net = NaiveLRPINN(rank=r, layout="paper")
        assert n_params(net) == expected + 3 * 2 * 50 * r
        net.freeze_bases()
        assert n_params(net, trainable_only=True) == expected


def test_unknown_layout_and_init_are_rejected():
    with pytest.raises(ValueError, match="layout"):
        HyperLRPINN(layout="both")
    with pytest.raises(ValueError, match="init"):
        LowRankLinear(4, 4, 2, init="xavier")


# --------------------------------------------------------------------------- low-rank layer


@pytest.mark.parametrize("in_f,out_f,rank", [(5, 7, 3), (7, 5, 7), (50, 50, 50), (16, 8, 12), (3, 4, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_low_rank_linear_equals_linear_with_its_dense_weight(in_f, out_f, rank, bias):
    torch.manual_seed(in_f * 100 + rank)
    layer = LowRankLinear(in_f, out_f, rank, bias=bias).double()
    with torch.no_grad():
        layer.s.normal_()
        if bias:
            layer.bias.normal_()
    x = torch.randn(11, in_f, dtype=torch.float64)
    w = layer.dense_weight()
    assert w.shape == (out_f, in_f)
    torch.testing.assert_close(w, layer.U @ torch.diag(layer.s) @ layer.V.t())
    torch.testing.assert_close(layer(x), F.linear(x, w, layer.bias))


def test_low_rank_linear_takes_one_diagonal_per_row():
    torch.manual_seed(1)
    layer = LowRankLinear(6, 4, 3, diagonal=False, init="orthogonal").double()
    assert layer.s is None and set(dict(layer.named_parameters())) == {"U", "V", "bias"}
    x, s = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    rows = torch.stack([F.linear(x[i], layer.dense_weight(s[i]), layer.bias) for i in range(5)])
    torch.testing.assert_close(layer(x, s), rows)
    with pytest.raises(ValueError):
        layer(x)


# --------------------------------------------------------------------------- batching over μ


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_batched_output_equals_per_mu_calls(layout):
    torch.manual_seed(2)
    net = HyperLRPINN(layout=layout, mu_low=[30, 0, 0], mu_high=[40, 1, 2]).double()
    coords, table, idx = coords_and_mu(60, torch.float64)
    per_mu = torch.empty(60, 1, dtype=torch.float64)
    for k in range(3):
        per_mu[idx == k] = net(coords[idx == k], table[k])
    torch.testing.assert_close(net(coords, table[idx]), per_mu)
    torch.testing.assert_close(net(coords, table, mu_index=idx), per_mu)
    # μ that requires grad skips the de-duplication (per-point path) and gives the same values
    torch.testing.assert_close(net(coords, table[idx].clone().requires_grad_()), per_mu)


def test_hypernetwork_runs_once_per_distinct_mu():
    net = HyperLRPINN()
    seen = []
    net.hyper.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    coords, table, idx = coords_and_mu(200)
    net(coords, table[idx])
    assert seen == [len(torch.unique(idx))]


def test_single_point_under_vmap_and_second_derivatives():
    torch.manual_seed(3)
    net = HyperLRPINN(width=8, rank=6, hyper_width=5, layout="paper").double()
    coords, table, _ = coords_and_mu(7, torch.float64)
    mu = table[2]
    batch = net(coords, mu)
    single = torch.func.vmap(lambda c: net(c, mu))(coords)
    torch.testing.assert_close(single, batch)
    c = coords.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: net(x, mu), (c,))


def test_mu_normalisation_is_identity_when_off():
    off = MuScaler(3)
    mu = torch.tensor([[30.0, 0.0, 5.0]])
    torch.testing.assert_close(off(mu), mu)
    on = MuScaler(3, low=[30, 0, 1], high=[40, 0, 5])
    torch.testing.assert_close(on(torch.tensor([[30.0, 0.0, 1.0], [40.0, 0.0, 5.0], [35.0, 0.0, 3.0]])),
                               torch.tensor([[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(HyperLRPINN().hyper.scaler.scale, torch.ones(3))


# --------------------------------------------------------------------------- state dict and phase 2


def test_state_dict_keys_are_stable_and_readable():
    keys = set(HyperLRPINN(layout="paper").state_dict())
    assert {"first.weight", "first.bias", "last.weight", "last.bias", "hyper.scaler.shift", "hyper.scaler.scale",
            "hyper.embed.0.weight", "hyper.embed.4.bias", "hyper.heads.2.weight"} <= keys
    for n in range(3):
        assert {f"layers.{n}.U", f"layers.{n}.V", f"layers.{n}.bias"} <= keys and f"layers.{n}.s" not in keys
    assert all(k.split(".")[0] in {"hyper", "first", "layers", "last"} for k in keys)
    release = set(HyperLRPINN(layout="release").state_dict())
    assert release == keys - {f"layers.{n}.bias" for n in range(3)}
    adapted = set(HyperLRPINN().adapt([30.0, 0.0, 0.0]).state_dict())
    assert adapted == {"first.weight", "first.bias", "last.weight", "last.bias"} | {
        f"layers.{n}.{p}" for n in range(3) for p in ("U", "s", "V")}


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_phase_2_trains_exactly_s_and_the_dense_layers(layout):
    net = HyperLRPINN(layout=layout)
    full = net.adapt(torch.tensor([35.0, 0.0, 0.0]))
    trainable = {n for n, p in full.named_parameters() if p.requires_grad}
    assert trainable == {"first.weight", "first.bias", "last.weight", "last.bias",
                         "layers.0.s", "layers.1.s", "layers.2.s"}
    assert n_params(full, trainable_only=True) == 351
    adaptive = net.adapt([35.0, 0.0, 0.0], rank="adaptive")
    assert n_params(adaptive, trainable_only=True) <= 351
    assert n_params(adaptive, trainable_only=True) == 201 + sum(adaptive.ranks)
    torch.testing.assert_close(torch.tensor(adaptive.ranks), net.ranks(torch.tensor([35.0, 0.0, 0.0]))[0])


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_adaptive_rank_equals_full_rank_at_initialisation(layout):
    torch.manual_seed(4)
    net = HyperLRPINN(layout=layout, mu_low=[30, 0, 0], mu_high=[40, 0, 0]).double()
    mu = torch.tensor([37.0, 0.0, 0.0], dtype=torch.float64)
    full, adaptive = net.adapt(mu), net.adapt(mu, rank="adaptive")
    assert full.ranks == [50, 50, 50]
    assert all(0 < r < 50 for r in adaptive.ranks)  # the ReLU heads zero some entries at init
    coords, _, _ = coords_and_mu(40, torch.float64)
    expected = net(coords, mu)
    torch.testing.assert_close(full(coords), expected)
    torch.testing.assert_close(adaptive(coords), expected)
    # a positive threshold drops non-zero entries too and changes the output
    assert sum(net.adapt(mu, rank="adaptive", threshold=0.05).ranks) < sum(adaptive.ranks)


def test_phase_2_network_shares_nothing_with_phase_1():
    net = HyperLRPINN(layout="paper")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted = net.adapt([30.0, 0.0, 0.0])
    coords, _, _ = coords_and_mu(32)
    opt = torch.optim.Adam([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        adapted(coords).square().mean().backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not torch.equal(adapted.first.weight, net.first.weight)
    assert all(layer.U.grad is None and layer.V.grad is None for layer in adapted.layers)


# --------------------------------------------------------------------------- orthogonality penalty


@pytest.mark.parametrize("squared", [True, False])
def test_orthogonality_penalty_vanishes_for_orthogonal_bases(squared):
    torch.manual_seed(5)
    net = NaiveLRPINN(rank=20).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.U.copy_(torch.linalg.qr(torch.randn(50, 20, dtype=torch.float64)).Q)
            layer.V.copy_(torch.linalg.qr(torch.randn(50, 20, dtype=torch.float64)).Q)
    assert float(orthogonality_penalty(net, 2.0, 3.0, squared=squared).detach()) < 1e-12
    default = NaiveLRPINN(rank=20)  # the release's positive U[0,1)/50 bases are far from orthogonal
    assert float(orthogonality_penalty(default).detach()) > 1.0
    with pytest.raises(ValueError):
        orthogonality_penalty(PINN())


@pytest.mark.parametrize("squared", [True, False])
def test_orthogonality_penalty_gradient_matches_finite_differences(squared):
    # gradcheck compares the autograd gradient with central finite differences (float64); the
    # penalty only reads .U and .V, so plain holders stand in for the layers
    torch.manual_seed(6)
    shapes = [(5, 4), (6, 4), (6, 3), (5, 3)]  # U, V of a 6 -> 5 rank-4 and a 5 -> 6 rank-3 layer
    bases = tuple(torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in shapes)

    def penalty(u0, v0, u1, v1):
        layers = [SimpleNamespace(U=u0, V=v0), SimpleNamespace(U=u1, V=v1)]
        return orthogonality_penalty(layers, weight_u=0.7, weight_v=1.3, squared=squared)

    assert torch.autograd.gradcheck(penalty, bases)
    # and the value is the formula
    power = 2 if squared else 1
    expected = sum(w * torch.linalg.matrix_norm(b.t() @ b - torch.eye(b.shape[1], dtype=b.dtype)) ** power
                   for b, w in zip(bases, (0.7, 1.3, 0.7, 1.3)))
    torch.testing.assert_close(penalty(*bases), expected)


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_blocked_points_use_per_mu_dense_weights_with_the_same_output_and_gradients(layout):
    torch.manual_seed(0)
    net = HyperLRPINN(layout=layout)
    mu = torch.tensor([[30.0, 0, 0], [35.0, 1, 0], [40.0, 0, 2]])
    coords = torch.rand(3 * 7, 2, requires_grad=True)
    blocks = torch.arange(3).repeat_interleave(7)
    u_blocked = net(coords, mu, blocks)  # the batched dense-weight path
    u_rows = net(coords, mu[blocks].clone())  # one μ row per point: the per-point diagonal path
    torch.testing.assert_close(u_blocked, u_rows, rtol=1e-5, atol=1e-6)
    g1 = torch.autograd.grad(u_blocked.sum(), [coords, *net.parameters()], allow_unused=True)
    g2 = torch.autograd.grad(u_rows.sum(), [coords, *net.parameters()], allow_unused=True)
    for a, b in zip(g1, g2):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    shuffled = blocks[torch.randperm(21)]  # not blocked: the general path, same values
    torch.testing.assert_close(net(coords, mu, shuffled), net(coords, mu[shuffled].clone()), rtol=1e-5, atol=1e-6)
