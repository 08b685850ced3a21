"""Input derivatives of a PINN in one forward pass: Taylor-mode (jet) propagation.

A *jet* carries, for every point, the value of a hidden layer and exactly the partial
derivatives of it with respect to the input coordinates that a residual needs.  Which ones is
a set of multi-indices over the coordinate axes, e.g. for coords ``(x, t)``::

    {(1, 0): u_x, (0, 1): u_t, (2, 0): u_xx, (1, 1): u_xt}

(orders 1 and 2, mixed included; ``(0, 0)``, the value, is always returned).  A second-order
component (i, j) needs the first-order components i and j: those are propagated too, but only
the requested ones are returned, and nothing else is formed (no u_xx when it is not asked for:
the caller drops the terms whose coefficient is zero for every μ of the batch).

Rules, per layer, for a pre-activation a with components a, a_i, a_ij:

* a linear map (``Linear``; ``LowRankLinear`` U diag(s) Vᵀ with s shared, one per μ row, or one
  per point) applies to every component; its bias is added to the value component only;
* an elementwise σ gives σ(a), σ'(a)·a_i and σ''(a)·a_i·a_j + σ'(a)·a_ij (tanh, sin, SiLU);
* the input seed: value = the inputs, d/dx_i = the unit vector e_i, second order 0; inputs that
  do not depend on the coordinates (μ concatenated to them in PINN-P, after its ``MuScaler``) have
  zero derivatives, so the first layer's derivative components are just columns of its weight;
* the hypernetwork of Hyper-LR-PINN acts on μ only: it runs once per μ row, no jet.

The components are stacked along the batch axis, the jet tensor is (G, K, n, width) with
K = 1 + k1 + k2 components, so every layer is one matmul over (G·K·n, width) (or, with one
weight per group of points, one batched product over G): that is where the speed comes from.
Nothing loops over points or μ in Python.  Parameter gradients are plain first-order autograd
through this forward (no ``create_graph``).  Numerics stay in the dtype of the network and
inputs; nothing here uses autocast.

Where it pays: a jet costs about K = 1 + k1 + k2 forward passes (and twice that backward);
nested autograd gets all first derivatives from one reverse pass but needs one more
differentiation of the gradient graph per second-order axis.  So the jet wins with second
orders (more so with mixed ones and wider sets), not with first orders only; ``engine="auto"``
picks it only when a second order is requested.

Entry point: :func:`derivatives` ``(net, coords, mu, mu_index, wanted, engine)``, returning
``{multi-index: (N, out_dim)}``.  A network takes part through the hook
``PINNNetwork.forward_jet(coords, mu, mu_index, wanted)`` (implemented by ``PINN``, ``PINNP``,
``NaiveLRPINN`` and ``HyperLRPINN`` in both layouts, for the activations above); a network
without it (or with another activation) falls back to nested autograd
(:func:`autograd_derivatives`, built on :mod:`lemon_pl.pinn.derivatives`), which returns the same
dict and is the oracle of the tests.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lemon_pl.pinn.derivatives import grad as _grad
from lemon_pl.pinn.networks.base import PINNNetwork, Sine

MultiIndex = tuple[int, ...]
#: fused activation steps (hand-written backward) for tanh and sin; False: plain autograd ops
FUSED = True
ENGINES = ("auto", "jet", "autograd")


class JetPlan:
    """Which components a jet over ``d`` coordinate axes carries, in order: the value, the
    first-order axes (requested or needed by a requested second order), the requested
    second-order pairs (i <= j).  ``wanted`` are multi-indices of length ``d``, order <= 2."""

    def __init__(self, d: int, wanted: Iterable[Iterable[int]] = ()) -> None:
        self.d = int(d)
        keys: list[MultiIndex] = []
        for w in wanted:
            key = tuple(int(v) for v in w)
            if len(key) != self.d or any(v < 0 for v in key):
                raise ValueError(f"multi-index {w!r} must have {self.d} non-negative entries")
            if sum(key) > 2:
                raise ValueError(f"multi-index {key} is of order {sum(key)}: only orders 1 and 2 are supported")
            if sum(key) and key not in keys:
                keys.append(key)
        self.wanted: tuple[MultiIndex, ...] = tuple(keys)
        seconds = sorted({self._pair(k) for k in keys if sum(k) == 2})
        firsts = {k.index(1) for k in keys if sum(k) == 1} | {a for p in seconds for a in p}
        self.firsts: tuple[int, ...] = tuple(sorted(firsts))
        self.seconds: tuple[tuple[int, int], ...] = tuple(seconds)
        self.k1, self.k2 = len(self.firsts), len(self.seconds)
        self.n_components = 1 + self.k1 + self.k2
        pos = {a: 1 + n for n, a in enumerate(self.firsts)}
        self.pair_left = [pos[i] for i, _ in self.seconds]
        self.pair_right = [pos[j] for _, j in self.seconds]
        self.component = {self.value_key: 0}
        for a in self.firsts:
            self.component[self.key(a)] = pos[a]
        for n, (i, j) in enumerate(self.seconds):
            self.component[self.key(i, j)] = 1 + self.k1 + n

    @property
    def value_key(self) -> MultiIndex:
        return (0,) * self.d

    def key(self, *axes: int) -> MultiIndex:
        k = [0] * self.d
        for a in axes:
            k[a] += 1
        return tuple(k)

    @staticmethod
    def _pair(key: MultiIndex) -> tuple[int, int]:
        axes = [a for a, v in enumerate(key) for _ in range(v)]
        return axes[0], axes[1]

    @classmethod
    def of(cls, d: int, wanted: Union["JetPlan", Iterable[Iterable[int]]]) -> "JetPlan":
        if isinstance(wanted, JetPlan):
            if wanted.d != d:
                raise ValueError(f"plan over {wanted.d} axes used with {d}-dimensional coordinates")
            return wanted
        return cls(d, wanted)


def activation_derivatives(act: nn.Module):
    """``a -> (σ(a), σ'(a), σ''(a))`` for a supported activation module, else None."""
    if isinstance(act, nn.Tanh):
        def tanh(a: Tensor):
            t = torch.tanh(a)
            d1 = 1 - t * t
            return t, d1, -2 * t * d1
        return tanh
    if isinstance(act, Sine):
        def sine(a: Tensor):
            s = torch.sin(a)
            return s, torch.cos(a), -s
        return sine
    if isinstance(act, nn.SiLU):
        def silu(a: Tensor):
            g = torch.sigmoid(a)
            d1 = g * (1 + a * (1 - g))
            return a * g, d1, g * (1 - g) * (2 + a * (1 - 2 * g))
        return silu
    return None


def _third(act: nn.Module):
    """``(σ, σ', σ'') -> σ'''`` where a fused activation step knows it (tanh, sin), else None."""
    if isinstance(act, nn.Tanh):
        return lambda s0, s1, s2: -2 * (s1 * s1 + s0 * s2)
    if isinstance(act, Sine):
        return lambda s0, s1, s2: -s1
    return None


class _FusedAct(torch.autograd.Function):
    """One activation step of a jet with a hand-written backward: no per-component temporaries,
    no concatenation.  Forward: out = [σ(a), σ'·a_i, σ''·a_i·a_j + σ'·a_ij]; backward (first order
    only, which is all a parameter gradient needs): d a_i = g_i σ' + Σ_(i,j) g_ij σ'' a_j (and
    symmetrically for j), d a_ij = g_ij σ', d a = g σ' + σ''·Σ_c g_c a_c (over every derivative
    component c) + σ'''·Σ_(i,j) g_ij a_i a_j."""

    @staticmethod
    def forward(ctx, data, bias, fn, third, k1, left, right):
        a0 = data[:, :1] if bias is None else data[:, :1] + bias
        s0, s1, s2 = fn(a0)
        out = torch.empty_like(data)
        out[:, :1] = s0
        torch.mul(data[:, 1:], s1, out=out[:, 1:])
        for c, (l, r) in enumerate(zip(left, right)):
            out[:, 1 + k1 + c:2 + k1 + c].addcmul_(data[:, l:l + 1] * data[:, r:r + 1], s2)
        ctx.save_for_backward(data, s0, s1, s2)
        ctx.third, ctx.k1, ctx.pairs, ctx.has_bias = third, k1, list(zip(left, right)), bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        data, s0, s1, s2 = ctx.saved_tensors
        k1 = ctx.k1
        grad = torch.empty_like(data)
        torch.mul(gout[:, 1:], s1, out=grad[:, 1:])
        da0 = gout[:, :1] * s1 + (gout[:, 1:] * data[:, 1:]).sum(dim=1, keepdim=True) * s2
        if ctx.pairs:
            s3 = ctx.third(s0, s1, s2)
            acc = torch.zeros_like(da0)
            for c, (l, r) in enumerate(ctx.pairs):
                g2 = gout[:, 1 + k1 + c:2 + k1 + c] * s2
                grad[:, l:l + 1].addcmul_(g2, data[:, r:r + 1])
                grad[:, r:r + 1].addcmul_(g2, data[:, l:l + 1])
                acc.addcmul_(gout[:, 1 + k1 + c:2 + k1 + c], data[:, l:l + 1] * data[:, r:r + 1])
            da0 = da0 + acc * s3
        grad[:, :1] = da0
        gbias = da0.sum(dim=(0, 1, 2)) if ctx.has_bias else None
        return grad, gbias, None, None, None, None, None


def supports(act: nn.Module) -> bool:
    """Whether the jet knows σ' and σ'' of this activation module."""
    return activation_derivatives(act) is not None


class Jet:
    """The jet of a hidden layer: ``data`` (G, K, n, width), component axis 1 (order of
    :class:`JetPlan`), G groups of n points (point g·n + j), one group unless each group of points
    has its own weights (one μ row per group).  ``bias`` is a bias not yet added to the value
    component: the next activation adds it to the value it differentiates (or :meth:`result`
    does), so no pass over the whole jet is spent on it."""

    def __init__(self, data: Tensor, plan: JetPlan, bias: Optional[Tensor] = None) -> None:
        self.data, self.plan, self.bias = data, plan, bias

    @classmethod
    def seed(cls, inputs: Tensor, weight: Tensor, bias: Optional[Tensor], plan: JetPlan) -> "Jet":
        """The first affine layer on ``inputs`` (G, n, in) whose first ``plan.d`` columns are the
        coordinates (the rest, μ, constant in them): value W x + b, d/dx_i = W[:, i], second 0."""
        g, n = inputs.shape[0], inputs.shape[1]
        value = F.linear(inputs, weight, bias).unsqueeze(1)  # (G, 1, n, w)
        parts = [value]
        if plan.k1:
            cols = weight[:, list(plan.firsts)].t()  # (k1, w)
            parts.append(cols[None, :, None, :].expand(g, plan.k1, n, weight.shape[0]))
        if plan.k2:
            parts.append(value.new_zeros(g, plan.k2, n, weight.shape[0]))
        return cls(torch.cat(parts, dim=1) if len(parts) > 1 else value, plan)

    def _flush(self) -> Tensor:
        """``data`` with its pending bias added (only where nothing can fuse it)."""
        if self.bias is None:
            return self.data
        value, rest = self.data.split([1, self.data.shape[1] - 1], dim=1)
        return torch.cat([value + self.bias, rest], dim=1)

    def linear(self, weight: Tensor, bias: Optional[Tensor] = None) -> "Jet":
        """y = W h (+ b on the value), one matmul over every component and point."""
        data = self._flush()
        g, k, n, w = data.shape
        y = (data.reshape(-1, w) @ weight.t()).view(g, k, n, weight.shape[0])
        return Jet(y, self.plan, bias)

    def lowrank(self, U: Tensor, V: Tensor, s: Tensor, bias: Optional[Tensor] = None, per: str = "shared") -> "Jet":
        """y = U diag(s) Vᵀ h (+ b on the value).  ``per``: ``"shared"`` (s (r,) for every point),
        ``"group"`` (s (G, r), one per group: one batched product with the groups' dense weights)
        or ``"point"`` (s (n, r), one per point, G = 1: the factored form ((h V) * s) Uᵀ)."""
        data = self._flush()
        g, k, n, w = data.shape
        out, r = U.shape
        if per == "shared":
            if r * (w + out) > w * out:
                return Jet(data, self.plan).linear((U * s) @ V.t(), bias)
            z = (data.reshape(-1, w) @ V) * s
            return Jet((z @ U.t()).view(g, k, n, out), self.plan, bias)
        if per == "group":
            if s.shape[0] != g:
                raise ValueError(f"{s.shape[0]} diagonals for {g} groups")
            weights = (U[None] * s[:, None, :]) @ V.t()[None]  # (G, out, in)
            y = torch.bmm(data.reshape(g, k * n, w), weights.transpose(1, 2)).view(g, k, n, out)
            return Jet(y, self.plan, bias)
        if per == "point":
            if g != 1 or s.shape[0] != n:
                raise ValueError(f"{s.shape[0]} diagonals for {g} x {n} points")
            z = (data @ V) * s  # (1, K, n, r) * (n, r)
            return Jet(z @ U.t(), self.plan, bias)
        raise ValueError(f"per must be 'shared', 'group' or 'point', got {per!r}")

    def act(self, act: nn.Module) -> "Jet":
        """σ(a), σ'(a)·a_i, σ''(a)·a_i·a_j + σ'(a)·a_ij for every component at once.

        The components are taken apart with ``split``/``unbind`` (whose backward is one
        concatenation), not by slicing (whose backward fills a zero tensor per slice)."""
        fn = activation_derivatives(act)
        if fn is None:
            raise ValueError(f"no jet rule for activation {type(act).__name__}")
        p = self.plan
        third = _third(act)
        if FUSED and third is not None and p.n_components > 1:
            return Jet(_FusedAct.apply(self.data, self.bias, fn, third, p.k1, p.pair_left, p.pair_right), p)
        value, firsts, seconds = self.data.split([1, p.k1, p.k2], dim=1)
        a0 = value if self.bias is None else value + self.bias
        s0, s1, s2 = fn(a0)  # (G, 1, n, w) each
        if p.n_components == 1:
            return Jet(s0, p)
        if not p.k2:
            return Jet(torch.cat([s0, firsts * s1], dim=1), p)
        f = firsts.unbind(1)
        prod = torch.stack([f[i - 1] * f[j - 1] for i, j in zip(p.pair_left, p.pair_right)], dim=1)
        return Jet(torch.cat([s0, firsts * s1, seconds * s1 + prod * s2], dim=1), p)

    def result(self) -> dict[MultiIndex, Tensor]:
        """``{multi-index: (N, out)}``: the value and the requested derivatives, points in order."""
        g, k, n, out = self.data.shape
        p = self.plan
        comps = self.data.unbind(1)
        value = comps[0] if self.bias is None else comps[0] + self.bias
        res = {p.value_key: value.reshape(g * n, out)}
        for key in p.wanted:
            res[key] = comps[p.component[key]].reshape(g * n, out)
        return res


def autograd_derivatives(net: nn.Module, coords: Tensor, mu: Optional[Tensor] = None,
                         mu_index: Optional[Tensor] = None,
                         wanted: Union[JetPlan, Iterable[Iterable[int]]] = ()) -> dict[MultiIndex, Tensor]:
    """The same dict as :func:`derivatives` by nested autograd (``create_graph=True``): the
    fallback for any network and the oracle.  Each output component's gradient is taken once,
    each needed first derivative differentiated once more."""
    plan = JetPlan.of(coords.shape[-1], wanted)
    x = coords if coords.requires_grad else coords.detach().requires_grad_(True)
    u = net(x, mu, mu_index) if isinstance(net, PINNNetwork) else net(x)
    u = u if u.ndim == 2 else u.reshape(-1, 1)
    per_key: dict[MultiIndex, list[Tensor]] = {key: [] for key in plan.wanted}
    for c in range(u.shape[1]):
        g = _grad(u[:, c], x) if plan.k1 else None
        hess = {i: _grad(g[:, i], x) for i in {i for i, _ in plan.seconds}}
        for key in plan.wanted:
            if sum(key) == 1:
                per_key[key].append(g[:, key.index(1)])
            else:
                i, j = plan._pair(key)
                per_key[key].append(hess[i][:, j])
    res = {plan.value_key: u}
    for key, cols in per_key.items():
        res[key] = torch.stack(cols, dim=1)
    return res


def derivatives(net: nn.Module, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                wanted: Union[JetPlan, Iterable[Iterable[int]]] = (), engine: str = "auto") -> dict[MultiIndex, Tensor]:
    """The network's output and exactly the ``wanted`` input derivatives at ``coords`` (N, d):
    ``{(0,...,0): u, key: d^|key| u / dx^key}``, each (N, out_dim).

    ``engine``: ``"jet"`` (one Taylor-mode forward, :meth:`PINNNetwork.forward_jet`; an error if
    the network has none), ``"autograd"`` (nested autograd) or ``"auto"``: the jet where the
    network offers it and a second-order derivative is requested, else autograd.  With first
    orders only, one reverse pass gives every u_{x_i} at once, while the jet carries one more
    copy of every hidden layer per axis: for d = 2 the jet does about 1.5x the work, and
    ``benchmarks/pinn_step.py`` (rows ``engine/a``, ``engine/b``) measures it slower.  Parameter
    gradients flow through either."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    plan = JetPlan.of(coords.shape[-1], wanted)
    if engine == "jet" or (engine == "auto" and plan.k2):
        hook = getattr(net, "forward_jet", None)
        out = hook(coords, mu, mu_index, plan) if hook is not None else None
        if out is not None:
            return out
        if engine == "jet":
            raise ValueError(f"{type(net).__name__} offers no jet (forward_jet): use engine='auto' or 'autograd'")
    return autograd_derivatives(net, coords, mu, mu_index, plan)


__all__ = ["ENGINES", "Jet", "JetPlan", "activation_derivatives", "autograd_derivatives", "derivatives", "supports"]
