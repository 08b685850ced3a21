"""The MLP networks: the vanilla PINN and PINN-P (μ concatenated to the coordinates)."""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn

from lemon_pl.pinn.networks.base import MuScaler, PINNNetwork, make_activation, mu_per_point

class PINN(PINNNetwork):
    """The vanilla PINN: an MLP ``in_dim -> width -> (hidden_layers x width -> width) -> out_dim``
    with the activation after every layer but the last.  Defaults give the 10,401-parameter
    network (2 -> 50, four 50 -> 50, 50 -> 1, tanh)."""

    uses_mu: ClassVar[bool] = False

    def __init__(self, in_dim: int = 2, out_dim: int = 1, width: int = 50, hidden_layers: int = 4,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.first = nn.Linear(in_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(hidden_layers))
        self.last = nn.Linear(width, out_dim)
        self.act = make_activation(activation)

    def trunk(self, inputs: Tensor) -> Tensor:
        h = self.act(self.first(inputs))
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.last(h)

    def forward(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None) -> Tensor:
        return self.trunk(coords)

    def trunk_jet(self, inputs: Tensor, plan) -> Optional[dict]:
        """The trunk's jet on ``inputs`` (N, in) whose first ``plan.d`` columns are the coordinates."""
        from lemon_pl.pinn.jets import Jet, supports

        if not supports(self.act):
            return None
        jet = Jet.seed(inputs[None], self.first.weight, self.first.bias, plan).act(self.act)
        for layer in self.hidden:
            jet = jet.linear(layer.weight, layer.bias).act(self.act)
        return jet.linear(self.last.weight, self.last.bias).result()

    def forward_jet(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                    wanted=()) -> Optional[dict]:
        from lemon_pl.pinn.jets import JetPlan

        return self.trunk_jet(coords, JetPlan.of(coords.shape[-1], wanted))


class PINNP(PINN):
    """PINN-P: the PINN MLP on ``[coords, μ]``, trained across μ.  ``mu_low``/``mu_high``
    optionally map μ to [-1, 1] first (:class:`MuScaler`)."""

    uses_mu: ClassVar[bool] = True

    def __init__(self, in_dim: int = 2, out_dim: int = 1, mu_dim: int = 3, width: int = 50,
                 hidden_layers: int = 4, activation: str = "tanh",
                 mu_low: Optional[Sequence[float]] = None, mu_high: Optional[Sequence[float]] = None) -> None:
        super().__init__(in_dim + mu_dim, out_dim, width, hidden_layers, activation)
        self.in_dim, self.mu_dim = in_dim, mu_dim
        self.scaler = MuScaler(mu_dim, mu_low, mu_high)

    def forward(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None) -> Tensor:
        mu = self.scaler(mu_per_point(mu, coords, mu_index))
        return self.trunk(torch.cat([coords, mu.to(coords.dtype)], dim=-1))

    def forward_jet(self, coords: Tensor, mu: Optional[Tensor] = None, mu_index: Optional[Tensor] = None,
                    wanted=()) -> Optional[dict]:
        from lemon_pl.pinn.jets import JetPlan

        mu = self.scaler(mu_per_point(mu, coords, mu_index))  # constant in the coordinates
        return self.trunk_jet(torch.cat([coords, mu.to(coords.dtype)], dim=-1), JetPlan.of(coords.shape[-1], wanted))


__all__ = ["PINN", "PINNP"]
