"""The jet engine (lemon_pl.pinn.jets) against nested autograd, in float64: every derivative of
order 1 and 2 (mixed included) and the parameter gradients of a residual-like loss, for every
network with a jet; only the requested derivatives are returned; networks without a jet fall back."""

from __future__ import annotations

import pytest
import torch

from lemon_pl.pinn.jets import JetPlan, autograd_derivatives, derivatives
from lemon_pl.pinn.networks import PINN, PINNP, HyperLRPINN, NaiveLRPINN
from lemon_pl.pinn.networks.base import PINNNetwork

ALL2D = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
M, N_PER = 3, 7  # μ rows, points per μ row


def _randomise(net: torch.nn.Module) -> torch.nn.Module:
    """Random weights of order one (the release's U[0,1)/50 bases make every derivative tiny)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return net


def _networks():
    cases = []
    for act in ("tanh", "sin"):
        cases += [
            (f"pinn-{act}", lambda a=act: PINN(width=16, hidden_layers=2, activation=a)),
            (f"pinnp-{act}", lambda a=act: PINNP(width=16, hidden_layers=2, activation=a, mu_low=[0, 0, 0],
                                               mu_high=[2, 2, 2])),
            (f"naive-release-{act}", lambda a=act: NaiveLRPINN(width=16, lowrank_layers=2, rank=[12, 5],
                                                              activation=a)),
            (f"naive-paper-{act}", lambda a=act: NaiveLRPINN(width=16, lowrank_layers=2, rank=5, layout="paper",
                                                            activation=a)),
            (f"hyper-release-{act}", lambda a=act: HyperLRPINN(width=16, rank=16, hyper_width=8, lowrank_layers=2,
                                                              activation=a)),
            (f"hyper-paper-{act}", lambda a=act: HyperLRPINN(width=16, rank=16, hyper_width=8, lowrank_layers=2,
                                                            layout="paper", activation=a)),
        ]
    cases += [("pinn-silu", lambda: PINN(width=16, hidden_layers=2, activation="silu")),
              ("hyper-release-silu", lambda: HyperLRPINN(width=16, rank=16, hyper_width=8, lowrank_layers=2,
                                                         activation="silu"))]
    return cases


NETS = _networks()


def _batch(layout: str = "blocks"):
    g = torch.Generator().manual_seed(2)
    coords = torch.rand(M * N_PER, 2, generator=g, dtype=torch.float64) * 2 - 1
    mu = torch.rand(M, 3, generator=g, dtype=torch.float64) * 2
    if layout == "blocks":
        index = torch.arange(M).repeat_interleave(N_PER)
    else:  # scattered rows: the per-point path
        index = torch.randint(0, M, (M * N_PER,), generator=g)
    return coords, mu, index


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> None:
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), 1e-12)
    assert float((a - b).abs().max()) <= rel * scale, (float((a - b).abs().max()), scale)


@pytest.mark.parametrize("layout", ["blocks", "scattered"])
@pytest.mark.parametrize("name,make", NETS, ids=[n for n, _ in NETS])
def test_every_derivative_equals_autograd(name, make, layout):
    torch.manual_seed(0)
    net = _randomise(make().double())
    coords, mu, index = _batch(layout)
    jet = derivatives(net, coords, mu, index, ALL2D, engine="jet")
    ref = autograd_derivatives(net, coords, mu, index, ALL2D)
    assert set(jet) == set(ref) == {(0, 0), *ALL2D}
    for key in ref:
        assert jet[key].shape == ref[key].shape == (M * N_PER, 1)
        _close(jet[key], ref[key])


def test_hyper_one_mu_for_every_point_and_per_point_mu():
    torch.manual_seed(0)
    net = _randomise(HyperLRPINN(width=16, rank=16, hyper_width=8, lowrank_layers=2).double())
    coords, mu, _ = _batch()
    for m in (mu[0], mu[torch.arange(coords.shape[0]) % M].requires_grad_(True)):
        jet = derivatives(net, coords, m, None, ALL2D, engine="jet")
        ref = autograd_derivatives(net, coords, m, None, ALL2D)
        for key in ref:
            _close(jet[key], ref[key])


@pytest.mark.parametrize("name,make", NETS, ids=[n for n, _ in NETS])
def test_parameter_gradients_equal_autograd(name, make):
    torch.manual_seed(0)
    net = _randomise(make().double())
    coords, mu, index = _batch()
    wanted = [(1, 0), (0, 1), (2, 0), (1, 1)]

    def loss(d):  # a CDR-like residual with a mixed term, squared
        u = d[(0, 0)]
        r = d[(0, 1)] + 3.0 * d[(1, 0)] - 0.5 * d[(2, 0)] + 0.1 * d[(1, 1)] - u * (1 - u)
        return r.square().mean()

    grads = []
    for engine in ("jet", "autograd"):
        net.zero_grad(set_to_none=True)
        loss(derivatives(net, coords, mu, index, wanted, engine=engine)).backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[1]:
        _close(grads[0][n], grads[1][n])


@pytest.mark.parametrize("name,make", [c for c in NETS if c[0] in ("pinn-tanh", "hyper-paper-sin")],
                         ids=["pinn-tanh", "hyper-paper-sin"])
def test_fused_and_plain_activation_steps_agree(name, make, monkeypatch):
    import lemon_pl.pinn.jets as jets

    net = _randomise(make().double())
    coords, mu, index = _batch()
    out = {}
    for fused in (True, False):
        monkeypatch.setattr(jets, "FUSED", fused)
        net.zero_grad(set_to_none=True)
        d = derivatives(net, coords, mu, index, ALL2D, engine="jet")
        sum(v.square().sum() for v in d.values()).backward()
        out[fused] = (d, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    for key in out[False][0]:
        _close(out[True][0][key], out[False][0][key], 1e-12)
    for n in out[False][1]:
        _close(out[True][1][n], out[False][1][n], 1e-12)


def test_only_the_requested_subset_is_formed():
    net = PINN(width=8, hidden_layers=1).double()
    coords = torch.rand(5, 2, dtype=torch.float64)
    plan = JetPlan(2, [(1, 0), (0, 1)])
    assert (plan.k1, plan.k2, plan.n_components) == (2, 0, 3)
    out = derivatives(net, coords, wanted=[(1, 0), (0, 1)], engine="jet")
    assert set(out) == {(0, 0), (1, 0), (0, 1)}
    # u_xx alone propagates u_x (needed) but returns neither u_x nor u_t
    plan = JetPlan(2, [(2, 0)])
    assert (plan.firsts, plan.seconds, plan.n_components) == ((0,), ((0, 0),), 3)
    assert set(derivatives(net, coords, wanted=[(2, 0)], engine="jet")) == {(0, 0), (2, 0)}
    assert set(derivatives(net, coords, wanted=[], engine="jet")) == {(0, 0)}
    with pytest.raises(ValueError, match="order 3"):
        JetPlan(2, [(3, 0)])


class _NoJet(PINNNetwork):
    """A network without the hook (and a plain module's activation)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 8), torch.nn.Linear(8, 2)

    def forward(self, coords, mu=None, mu_index=None):
        return self.b(torch.nn.functional.softplus(self.a(coords)))


def test_fallback_to_autograd():
    torch.manual_seed(0)
    net = _NoJet().double()
    coords = torch.rand(6, 2, dtype=torch.float64)
    auto = derivatives(net, coords, wanted=ALL2D)
    ref = autograd_derivatives(net, coords, wanted=ALL2D)
    for key in ref:
        assert auto[key].shape == (6, 2)
        torch.testing.assert_close(auto[key], ref[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="no jet"):
        derivatives(net, coords, wanted=ALL2D, engine="jet")
    # an activation without a jet rule falls back too, with the same numbers as the oracle
    gelu = PINN(width=8, hidden_layers=1, activation="gelu").double()
    out = derivatives(gelu, coords, wanted=ALL2D, engine="auto")
    for key, value in autograd_derivatives(gelu, coords, wanted=ALL2D).items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0)
    # a jet network through the autograd engine equals its jet
    pinn = _randomise(PINN(width=8, hidden_layers=1).double())
    a = derivatives(pinn, coords, wanted=ALL2D, engine="autograd")
    j = derivatives(pinn, coords, wanted=ALL2D, engine="auto")
    for key in a:
        _close(j[key], a[key])


def test_auto_picks_the_jet_only_with_second_orders(monkeypatch):
    net = PINN(width=8, hidden_layers=1).double()
    coords = torch.rand(5, 2, dtype=torch.float64)
    calls = []
    original = net.forward_jet
    monkeypatch.setattr(net, "forward_jet", lambda *a: calls.append(1) or original(*a))
    derivatives(net, coords, wanted=[(1, 0), (0, 1)])
    assert not calls  # first orders only: one reverse pass (autograd)
    derivatives(net, coords, wanted=[(1, 0), (2, 0)])
    assert calls == [1]
    derivatives(net, coords, wanted=[(1, 0)], engine="jet")
    assert calls == [1, 1]


def test_dtype_follows_the_network():
    net = PINN(width=8, hidden_layers=1)
    out = derivatives(net, torch.rand(4, 2), wanted=[(1, 0), (2, 0)])
    assert all(v.dtype == torch.float32 for v in out.values())
