"""What every physics-informed network shares: the stage's hooks (:class:`PINNNetwork`), activations,
the μ scaler and the rules that map μ rows onto points."""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence, Union

import torch
from torch import Tensor, nn

class Sine(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def make_activation(name: str) -> nn.Module:
    table = {"tanh": nn.Tanh, "sin": Sine, "silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}
    if name.lower() not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[name.lower()]()


def mu_per_point(mu: Optional[Tensor], coords: Tensor, mu_index: Optional[Tensor]) -> Tensor:
    """μ as one row per point, shaped like ``coords`` but for the last dimension."""
    if mu is None:
        raise ValueError("this network reads the PDE parameters: pass mu")
    if mu_index is not None:
        return mu[mu_index]
    if mu.dim() == 1:
        return mu.expand(*coords.shape[:-1], -1)
    n = coords.shape[0]
    if mu.dim() != 2 or mu.shape[0] != n:
        raise ValueError(f"mu must be (mu_dim,) or (N, mu_dim) with N = {n} points, got {tuple(mu.shape)}")
    return mu


def mu_groups(mu: Optional[Tensor], n: int, mu_index: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """The μ rows to evaluate once each, and the row of every point (None: rows line up with
    the points, or a single row serves all of them)."""
    if mu is None:
        raise ValueError("this network reads the PDE parameters: pass mu")
    if mu_index is not None:
        return mu, mu_index
    if mu.dim() == 1:
        return mu[None], None
    if mu.dim() != 2 or mu.shape[0] != n:
        raise ValueError(f"mu must be (mu_dim,) or (N, mu_dim) with N = {n} points, got {tuple(mu.shape)}")
    if mu.requires_grad:  # torch.unique would cut the graph to mu: evaluate per point instead
        return mu, None
    rows, index = torch.unique(mu, dim=0, return_inverse=True)
    return rows, index


def equal_blocks(index: Tensor, m: int) -> bool:
    """Whether ``index`` is 0..0 1..1 ... (m-1)..(m-1) in equal blocks."""
    n = index.numel()
    if n % m or n == m:
        return False
    expected = torch.arange(m, device=index.device)[:, None]
    return bool((index.view(m, -1) == expected).all())


class PINNNetwork(nn.Module):
    """The hooks every physics-informed network offers its stage (see the module doc)."""

    uses_mu: ClassVar[bool] = False
    adaptable: ClassVar[bool] = False
    reports_mu: ClassVar[bool] = False
    penalties: ClassVar[tuple[str, ...]] = ()

    def penalty(self, settings: dict[str, float]) -> Optional[Tensor]:
        """The regulariser for the stage's penalty ``settings`` (None: nothing to add)."""
        return None

    def adapt(self, mu: Union[Tensor, Sequence[float]], **settings) -> nn.Module:
        raise ValueError(f"{type(self).__name__} has no adaptation to a target μ")

    def matching(self, state: dict[str, Tensor], prefix: str = "") -> nn.Module:
        """This network, or a new one shaped like the checkpoint ``state`` (keys under ``prefix``)."""
        return self

    def adaptation_parameters(self) -> dict[str, nn.Parameter]:
        """The tensors an inner adaptation loop (MAML, Reptile) adapts, by name: the trainable ones."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def forward_jet(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                    wanted=()) -> Optional[dict]:
        """The output and the ``wanted`` input derivatives in one Taylor-mode forward
        (:mod:`lemon_pl.pinn.jets`), ``{multi-index: (N, out_dim)}``; None (the default): this
        network has no jet, :func:`lemon_pl.pinn.jets.derivatives` falls back to nested autograd."""
        return None

    def reports(self, mu: Tensor) -> dict[str, Tensor]:
        """Arrays describing the network at each row of ``mu`` (M, mu_dim) (nothing by default)."""
        return {}


class MuScaler(nn.Module):
    """Affine map of μ to [-1, 1] per component, given the box [low, high] of the training μ,
    or the identity (no box; what the release feeds the hypernetwork).  A component with
    low == high is only shifted.  Kept as buffers, so a checkpoint carries its normalisation."""

    def __init__(self, mu_dim: int, low: Optional[Sequence[float]] = None,
                 high: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        shift, scale = torch.zeros(mu_dim), torch.ones(mu_dim)
        if (low is None) != (high is None):
            raise ValueError("give both mu_low and mu_high, or neither")
        if low is not None:
            lo, hi = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
            if lo.shape != (mu_dim,) or hi.shape != (mu_dim,):
                raise ValueError(f"mu_low and mu_high need {mu_dim} entries each")
            if bool((hi < lo).any()):
                raise ValueError("mu_high must be >= mu_low in every component")
            shift = (lo + hi) / 2
            half = (hi - lo) / 2
            scale = torch.where(half > 0, half, torch.ones_like(half))
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, mu: Tensor) -> Tensor:
        return (mu - self.shift) / self.scale


__all__ = ["MuScaler", "PINNNetwork", "Sine", "equal_blocks", "make_activation", "mu_groups", "mu_per_point"]
