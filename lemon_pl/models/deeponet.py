"""DeepONet baseline (does not see the equation).

Branch: ``basis_dim`` independent tanh MLPs ``nx*input_len -> hidden -> nx``,
evaluated in one shot with batched weights (einsum), giving spatially varying
coefficients ``branch[b, k, x]``.  Trunk: tanh MLP on the scalar query time
``1 -> hidden (x trunk_layers) -> basis_dim``.  Output::

    u(b, t, x) = sum_k trunk[b, t, k] * branch[b, k, x] + bias

Size at the defaults (nx=128, input_len=1): branch 100*(128*256+256+256*128+128)
= 6,592,000, trunk 223,588, bias 1 -> 6,815,589 (reference ~6.80M; the 0.2%
gap is consistent with e.g. the reference omitting the branch output bias,
100*128 = 12,800 parameters).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .base import OperatorNetwork
from .layers import MLP, as_batched_times

__all__ = ["DeepONet"]


class DeepONet(OperatorNetwork):
    decoder_parts = ("trunk", "bias")

    def __init__(
        self,
        nx: int = 128,
        input_len: int = 1,
        output_len: int = 32,
        basis_dim: int = 100,
        hidden: int = 256,
        trunk_layers: int = 4,
    ) -> None:
        super().__init__()
        self.nx = nx
        self.input_len = input_len
        self.output_len = output_len  # informational: any number of query times works
        self.basis_dim = basis_dim
        in_dim = nx * input_len
        # batched branch MLPs: weights stacked along the basis dimension k
        self.branch_w1 = nn.Parameter(torch.empty(basis_dim, in_dim, hidden))
        self.branch_b1 = nn.Parameter(torch.empty(basis_dim, hidden))
        self.branch_w2 = nn.Parameter(torch.empty(basis_dim, hidden, nx))
        self.branch_b2 = nn.Parameter(torch.empty(basis_dim, nx))
        self.trunk = MLP(1, hidden, basis_dim, n_hidden=trunk_layers, activation="tanh")
        self.bias = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # same scheme as nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        for w, b in ((self.branch_w1, self.branch_b1), (self.branch_w2, self.branch_b2)):
            bound = 1.0 / math.sqrt(w.shape[1])
            w.uniform_(-bound, bound)
            b.uniform_(-bound, bound)
        self.bias.zero_()

    def branch(self, u_in: Tensor) -> Tensor:
        """(B, input_len, nx) -> coefficients (B, basis_dim, nx)."""
        x = u_in.flatten(1)  # (B, input_len*nx)
        h = torch.tanh(torch.einsum("bi,kih->bkh", x, self.branch_w1) + self.branch_b1)
        return torch.einsum("bkh,khx->bkx", h, self.branch_w2) + self.branch_b2

    def forward(
        self,
        u_in: Tensor,
        t_in: Tensor,
        t_out: Tensor,
        tokens: Optional[Tensor] = None,
        token_pad_mask: Optional[Tensor] = None,
    ) -> Tensor:
        if u_in.dim() != 3 or u_in.shape[1] != self.input_len or u_in.shape[2] != self.nx:
            raise ValueError(
                f"DeepONet expects u_in of shape (B, {self.input_len}, {self.nx}), got {tuple(u_in.shape)}"
            )
        b = u_in.shape[0]
        coeff = self.branch(u_in)  # (B, K, nx)
        t_q = as_batched_times(t_out, b, t_out.shape[-1], u_in)  # (B, n_out, 1)
        basis = self.trunk(t_q)  # (B, n_out, K)
        return torch.einsum("btk,bkx->btx", basis, coeff) + self.bias
