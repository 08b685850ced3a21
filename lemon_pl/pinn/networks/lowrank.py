"""The low-rank networks: LowRankLinear, Naive-LR-PINN, the hypernetwork, Hyper-LR-PINN (with its
phase-2 ``adapt`` hook) and the orthogonality penalty of their bases."""

from __future__ import annotations

from typing import ClassVar, Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lemon_pl.pinn.networks.base import MuScaler, PINNNetwork, equal_blocks, make_activation, mu_groups

#: the low-rank layouts: the paper's equations or the released code
LAYOUTS = ("paper", "release")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return layout


def _orthogonality(net: nn.Module, settings: dict[str, float]) -> Optional[Tensor]:
    wu, wv = settings.get("orth_weight_u", 0.0), settings.get("orth_weight_v", 0.0)
    if not (wu or wv):
        return None
    return orthogonality_penalty(net, wu, wv, bool(settings.get("orth_squared", False)))


class LowRankLinear(nn.Module):
    """y = U diag(s) Vᵀ x + b, computed as ((x V) * s) Uᵀ + b, or, with one s for every row and
    rank > in·out / (in + out), through the dense weight U diag(s) Vᵀ (less work per point).

    U is (out_features, rank), V (in_features, rank), s (rank,), b (out_features,).  With
    ``diagonal=False`` the layer owns no s and ``forward`` must be given one, either (rank,) or
    one row per input, (N, rank) (the hypernetwork's per-point diagonals).

    ``init``: ``"uniform"`` draws U and V from U[0, 1) divided by their number of rows (the
    release's U[0, 1)/50 at 50 x 50: positive, not orthogonal); ``"orthogonal"`` gives them
    orthonormal columns (``nn.init.orthogonal_``).  s starts at ones, b at zeros.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 diagonal: bool = True, init: str = "uniform") -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.U = nn.Parameter(torch.empty(out_features, rank))
        if diagonal:
            self.s = nn.Parameter(torch.ones(rank))
        else:
            self.register_parameter("s", None)
        self.V = nn.Parameter(torch.empty(in_features, rank))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_bases(init)

    @torch.no_grad()
    def reset_bases(self, init: str = "uniform") -> None:
        if init == "uniform":
            self.U.uniform_(0.0, 1.0).div_(max(self.out_features, 1))
            self.V.uniform_(0.0, 1.0).div_(max(self.in_features, 1))
        elif init == "orthogonal":
            if self.rank > 0:
                nn.init.orthogonal_(self.U)
                nn.init.orthogonal_(self.V)
        else:
            raise ValueError(f"unknown basis init {init!r}; expected 'uniform' or 'orthogonal'")

    def _diagonal(self, s: Optional[Tensor]) -> Tensor:
        if s is not None:
            return s
        if self.s is None:
            raise ValueError("this low-rank layer has no diagonal of its own: pass s")
        return self.s

    def dense_weight(self, s: Optional[Tensor] = None) -> Tensor:
        """The (out_features, in_features) weight U diag(s) Vᵀ (s: the layer's own, or (rank,))."""
        return (self.U * self._diagonal(s)) @ self.V.t()

    def forward(self, x: Tensor, s: Optional[Tensor] = None) -> Tensor:
        s = self._diagonal(s)
        if s.dim() == 2 and x.dim() == 3 and s.shape[0] == x.shape[0] != x.shape[1]:
            # one block of points per diagonal (M, n, in): per-block dense weights, one batched product
            w = (self.U[None] * s[:, None, :]) @ self.V.t()[None]  # (M, out, in)
            y = torch.bmm(x, w.transpose(1, 2))
            return y if self.bias is None else y + self.bias
        if s.dim() == 1 and self.rank * (self.in_features + self.out_features) > self.in_features * self.out_features:
            # one diagonal for every row and a rank above the break-even: the dense weight
            # (out x in, formed in O(out in rank)) makes one product per point instead of two
            return F.linear(x, (self.U * s) @ self.V.t(), self.bias)
        return F.linear(F.linear(x, self.V.t()) * s, self.U, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}, diagonal={self.s is not None}")


class NaiveLRPINN(PINNNetwork):
    """Naive-LR-PINN: h¹ = σ(W⁰ x + b⁰); h^{l+1} = σ(U^l diag(s^l) V^{lT} h^l [+ b^l]), l = 1..L;
    u = W^{L+1} h + b^{L+1} (release) or σ(W^{L+1} h + b^{L+1}) (paper).  Every U, s, V is
    trainable; ``rank`` is one int or one per layer.  :meth:`freeze_bases` freezes U and V."""

    uses_mu: ClassVar[bool] = False

    def __init__(self, in_dim: int = 2, out_dim: int = 1, width: int = 50, lowrank_layers: int = 3,
                 rank: Union[int, Sequence[int]] = 50, layout: str = "release", activation: str = "tanh",
                 basis_init: str = "uniform") -> None:
        super().__init__()
        self.layout = _check_layout(layout)
        ranks = [rank] * lowrank_layers if isinstance(rank, int) else [int(r) for r in rank]
        if len(ranks) != lowrank_layers:
            raise ValueError(f"got {len(ranks)} ranks for {lowrank_layers} low-rank layers")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.first = nn.Linear(in_dim, width)
        self.layers = nn.ModuleList(
            LowRankLinear(width, width, r, bias=layout == "paper", init=basis_init) for r in ranks)
        self.last = nn.Linear(width, out_dim)
        self.act = make_activation(activation)

    penalties: ClassVar[tuple[str, ...]] = ("orth_weight_u", "orth_weight_v", "orth_squared")

    @property
    def ranks(self) -> list[int]:
        return [layer.rank for layer in self.layers]

    def penalty(self, settings: dict[str, float]) -> Optional[Tensor]:
        return _orthogonality(self, settings)

    def matching(self, state: dict[str, Tensor], prefix: str = "") -> "NaiveLRPINN":
        """A phase-2 checkpoint may hold adaptive ranks: a network with the checkpoint's ranks,
        the same activation and the same frozen tensors (self when the ranks agree)."""
        ranks = [int(state[f"{prefix}layers.{i}.s"].shape[0]) for i in range(len(self.layers))
                 if f"{prefix}layers.{i}.s" in state]
        if len(ranks) != len(self.layers) or ranks == self.ranks:
            return self
        new = NaiveLRPINN(self.in_dim, self.out_dim, self.first.out_features, len(ranks), ranks,
                          self.layout).to(self.first.weight)
        new.act = self.act  # the phase-1 network's activation
        for o, n in zip(self.layers, new.layers):
            n.U.requires_grad_(o.U.requires_grad)
            n.V.requires_grad_(o.V.requires_grad)
            if o.bias is not None:
                n.bias.requires_grad_(o.bias.requires_grad)
        return new

    def freeze_bases(self) -> None:
        """Stop training the bases U, V of every low-rank layer."""
        for layer in self.layers:
            layer.U.requires_grad_(False)
            layer.V.requires_grad_(False)

    def forward(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None) -> Tensor:
        h = self.act(self.first(coords))
        for layer in self.layers:
            h = self.act(layer(h))
        u = self.last(h)
        return self.act(u) if self.layout == "paper" else u

    def forward_jet(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                    wanted=()) -> Optional[dict]:
        from lemon_pl.pinn.jets import Jet, JetPlan, supports

        if not supports(self.act):
            return None
        plan = JetPlan.of(coords.shape[-1], wanted)
        jet = Jet.seed(coords[None], self.first.weight, self.first.bias, plan).act(self.act)
        for layer in self.layers:
            jet = jet.lowrank(layer.U, layer.V, layer.s, layer.bias).act(self.act)
        jet = jet.linear(self.last.weight, self.last.bias)
        return (jet.act(self.act) if self.layout == "paper" else jet).result()


class Hypernetwork(nn.Module):
    """μ -> the diagonals of every low-rank layer: e⁰ = scaler(μ), e^m = tanh(W^m e^{m−1} + b^m)
    for m = 1..depth, s^l = ReLU(W_l e^depth + b_l) (one head per layer; the ReLU zeros set the
    rank).  Maps (M, mu_dim) to (M, n_layers, rank)."""

    def __init__(self, mu_dim: int = 3, n_layers: int = 3, rank: int = 50, width: int = 50, depth: int = 3,
                 mu_low: Optional[Sequence[float]] = None, mu_high: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.scaler = MuScaler(mu_dim, mu_low, mu_high)
        embed: list[nn.Module] = []
        for m in range(depth):
            embed += [nn.Linear(mu_dim if m == 0 else width, width), nn.Tanh()]
        self.embed = nn.Sequential(*embed)
        self.heads = nn.ModuleList(nn.Linear(width if depth else mu_dim, rank) for _ in range(n_layers))

    def forward(self, mu: Tensor) -> Tensor:
        e = self.embed(self.scaler(mu))
        return torch.stack([torch.relu(head(e)) for head in self.heads], dim=1)


class HyperLRPINN(PINNNetwork):
    """Hyper-LR-PINN: the :class:`NaiveLRPINN` trunk with s^l(μ) from a :class:`Hypernetwork`
    and bases U^l, V^l shared across μ (phase 1 trains all of it).  For a batch with one μ per
    point the hypernetwork runs once per distinct μ (``torch.unique``; with ``mu_index``, once
    per row of ``mu``), not once per point.  :meth:`adapt` builds the phase-2 network.

    ``mu_low``/``mu_high`` map μ to [-1, 1] before the hypernetwork; leaving them out feeds the
    raw μ, as the release does (which saturates the first tanh for μ ≈ 30-40).
    """

    uses_mu: ClassVar[bool] = True
    adaptable: ClassVar[bool] = True
    reports_mu: ClassVar[bool] = True
    penalties: ClassVar[tuple[str, ...]] = ("orth_weight_u", "orth_weight_v", "orth_squared")

    def __init__(self, in_dim: int = 2, out_dim: int = 1, mu_dim: int = 3, width: int = 50,
                 lowrank_layers: int = 3, rank: int = 50, hyper_width: int = 50, hyper_layers: int = 3,
                 layout: str = "release", activation: str = "tanh", basis_init: str = "uniform",
                 mu_low: Optional[Sequence[float]] = None, mu_high: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.layout = _check_layout(layout)
        self.in_dim, self.out_dim, self.mu_dim, self.width = in_dim, out_dim, mu_dim, width
        self.activation = activation
        self.hyper = Hypernetwork(mu_dim, lowrank_layers, rank, hyper_width, hyper_layers, mu_low, mu_high)
        self.first = nn.Linear(in_dim, width)
        self.layers = nn.ModuleList(
            LowRankLinear(width, width, rank, bias=layout == "paper", diagonal=False, init=basis_init)
            for _ in range(lowrank_layers))
        self.last = nn.Linear(width, out_dim)
        self.act = make_activation(activation)

    def diagonals(self, mu: Tensor) -> Tensor:
        """s^l(μ) for a batch of μ, (M, mu_dim) or (mu_dim,) -> (M, lowrank_layers, rank)."""
        return self.hyper(mu.reshape(-1, self.mu_dim).to(self.first.weight.dtype))

    def penalty(self, settings: dict[str, float]) -> Optional[Tensor]:
        return _orthogonality(self, settings)

    def reports(self, mu: Tensor) -> dict[str, Tensor]:
        """``sweep_s``: the diagonals s(μ) (M, lowrank_layers, rank), for the rank figures."""
        with torch.no_grad():
            return {"sweep_s": self.diagonals(mu)}

    def ranks(self, mu: Tensor, threshold: float = 0.0) -> Tensor:
        """Number of diagonal entries with |s| > threshold per μ and layer, (M, lowrank_layers)."""
        with torch.no_grad():
            return (self.diagonals(mu).abs() > threshold).sum(dim=-1)

    def forward(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None) -> Tensor:
        rows, index = mu_groups(mu, coords.shape[0], mu_index)
        s = self.diagonals(rows)  # (M, L, rank)
        m = rows.shape[0]
        if index is not None and m > 1 and equal_blocks(index, m):
            # the points come in M equal blocks, block k at μ row k (how the stages lay them out):
            # every low-rank layer is one batched product with the blocks' dense weights
            h = self.act(self.first(coords.view(m, -1, coords.shape[-1])))
            for l, layer in enumerate(self.layers):
                h = self.act(layer(h, s[:, l, :]))
            u = self.last(h).reshape(coords.shape[0], -1)
            return self.act(u) if self.layout == "paper" else u
        if index is not None:
            s = s[index]  # (N, L, rank): each point's own μ
        elif rows.shape[0] == 1 and mu.dim() == 1:
            s = s[0]  # (L, rank): one μ for every point, broadcast (also a single point under vmap)
        h = self.act(self.first(coords))
        for l, layer in enumerate(self.layers):
            h = self.act(layer(h, s[..., l, :]))
        u = self.last(h)
        return self.act(u) if self.layout == "paper" else u

    def forward_jet(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                    wanted=()) -> Optional[dict]:
        """As :meth:`forward`, by jet: the hypernetwork once per μ row (no jet: it reads μ only);
        equal blocks of points per μ row give one batched product per low-rank layer."""
        from lemon_pl.pinn.jets import Jet, JetPlan, supports

        if not supports(self.act):
            return None
        plan = JetPlan.of(coords.shape[-1], wanted)
        rows, index = mu_groups(mu, coords.shape[0], mu_index)
        s = self.diagonals(rows)  # (M, L, rank)
        m = rows.shape[0]
        if index is not None and m > 1 and equal_blocks(index, m):
            groups, per = coords.view(m, -1, coords.shape[-1]), "group"
        else:
            groups = coords[None]
            if index is not None:
                s, per = s[index], "point"
            elif m == 1:
                s, per = s[0], "shared"
            else:
                per = "point"  # one μ row per point already
        jet = Jet.seed(groups, self.first.weight, self.first.bias, plan).act(self.act)
        for l, layer in enumerate(self.layers):
            jet = jet.lowrank(layer.U, layer.V, s[..., l, :], layer.bias, per=per).act(self.act)
        jet = jet.linear(self.last.weight, self.last.bias)
        return (jet.act(self.act) if self.layout == "paper" else jet).result()

    @torch.no_grad()
    def adapt(self, mu: Union[Tensor, Sequence[float]], rank: str = "full", threshold: float = 0.0) -> NaiveLRPINN:
        """The phase-2 network for one target μ, a new :class:`NaiveLRPINN` sharing no tensor
        with this one: s^l initialised to s^l(μ) from the hypernetwork, W⁰, b⁰, W^{L+1}, b^{L+1}
        copied, all of them trainable; the bases U^l, V^l (and, in the paper layout, the
        hidden biases b^l) copied and frozen.  The hypernetwork is not part of it.

        ``rank="full"`` keeps every entry of s; ``"adaptive"`` keeps only the entries with
        |s| > ``threshold`` and the matching columns of U and V.  The default threshold 0
        drops exactly the entries the ReLU set to zero, so the output is unchanged."""
        if rank not in ("full", "adaptive"):
            raise ValueError(f"rank must be 'full' or 'adaptive', got {rank!r}")
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        ref = self.first.weight
        mu = torch.as_tensor(mu, dtype=ref.dtype, device=ref.device).reshape(-1)
        if mu.numel() != self.mu_dim:
            raise ValueError(f"adapt takes one μ of {self.mu_dim} components, got {mu.numel()}")
        s = self.diagonals(mu)[0]
        keep = [torch.ones_like(s_l, dtype=torch.bool) if rank == "full" else s_l.abs() > threshold for s_l in s]
        net = NaiveLRPINN(self.in_dim, self.out_dim, self.width, len(self.layers), [int(k.sum()) for k in keep],
                          self.layout, self.activation).to(ref)
        net.first.load_state_dict(self.first.state_dict())
        net.last.load_state_dict(self.last.state_dict())
        for old, new, s_l, k in zip(self.layers, net.layers, s, keep):
            new.U.copy_(old.U[:, k])
            new.V.copy_(old.V[:, k])
            new.s.copy_(s_l[k])
            new.U.requires_grad_(False)
            new.V.requires_grad_(False)
            if old.bias is not None:
                new.bias.copy_(old.bias)
                new.bias.requires_grad_(False)
        return net.train(self.training)


def orthogonality_penalty(layers: Union[nn.Module, Iterable[LowRankLinear]], weight_u: float = 1.0,
                          weight_v: float = 1.0, squared: bool = True) -> Tensor:
    """Σ_l weight_u ‖U_lᵀU_l − I‖_F^p + weight_v ‖V_lᵀV_l − I‖_F^p over the low-rank layers of
    a module (or an iterable of them); p = 2 with ``squared`` (the paper's Eq. 2), else p = 1.
    The release's term is p = 1 divided by 50² and added once per forward pass (4 per step),
    i.e. weights 4/50² with ``squared=False``."""
    found = ([m for m in layers.modules() if isinstance(m, LowRankLinear)] if isinstance(layers, nn.Module)
             else list(layers))
    if not found:
        raise ValueError("no low-rank layers to penalise")
    total = None
    for layer in found:
        for basis, weight in ((layer.U, weight_u), (layer.V, weight_v)):
            gap = basis.t() @ basis - torch.eye(basis.shape[1], dtype=basis.dtype, device=basis.device)
            term = gap.square().sum() if squared else torch.linalg.matrix_norm(gap)
            total = weight * term if total is None else total + weight * term
    return total


__all__ = ["LAYOUTS", "Hypernetwork", "HyperLRPINN", "LowRankLinear", "NaiveLRPINN", "orthogonality_penalty"]
