"""1-D Fourier Neural Operator baseline (does not see the equation).

Input channels are the ``input_len`` frames plus the grid coordinate
x in [0, 1) (periodic grid, x_j = j / nx).  A pointwise Linear lifts them to
``width`` channels, then ``n_layers`` Fourier layers

    v <- act( SpectralConv1d(v) + Linear(v) )

(as in the original FNO, the activation is skipped after the last Fourier
layer), and a pointwise MLP projects to ``output_len`` channels, one per
output time.  The values of ``t_out`` are ignored; only its length is checked.

Tensors are kept channels-last, ``(B, nx, C)``, throughout so every pointwise
layer is a plain ``nn.Linear`` on contiguous memory and the FFTs run along
dim 1.  All weights are independent of nx, so the same model runs at any
resolution (provided nx // 2 + 1 >= 1; modes above the Nyquist index are
simply unused).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import OperatorNetwork
from .layers import SpectralConv1d

__all__ = ["FNO"]


class FNO(OperatorNetwork):
    decoder_parts = ("proj1", "proj2")

    def __init__(
        self,
        nx: int = 128,
        input_len: int = 1,
        output_len: int = 32,
        modes: int = 16,
        width: int = 64,
        n_layers: int = 4,
        proj_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.nx = nx  # informational only: the model is resolution-agnostic
        self.input_len = input_len
        self.output_len = output_len
        self.lift = nn.Linear(input_len + 1, width)
        self.spectral = nn.ModuleList(SpectralConv1d(width, width, modes) for _ in range(n_layers))
        self.skip = nn.ModuleList(nn.Linear(width, width) for _ in range(n_layers))
        self.proj1 = nn.Linear(width, proj_hidden)
        self.proj2 = nn.Linear(proj_hidden, output_len)

    def forward(
        self,
        u_in: Tensor,
        t_in: Tensor,
        t_out: Tensor,
        tokens: Optional[Tensor] = None,
        token_pad_mask: Optional[Tensor] = None,
    ) -> Tensor:
        if u_in.dim() != 3 or u_in.shape[1] != self.input_len:
            raise ValueError(f"FNO expects u_in of shape (B, {self.input_len}, nx), got {tuple(u_in.shape)}")
        if t_out.shape[-1] != self.output_len:
            raise ValueError(
                f"FNO predicts a fixed set of {self.output_len} output frames, but t_out has "
                f"{t_out.shape[-1]} entries; build the FNO with output_len={t_out.shape[-1]}"
            )
        b, _, n = u_in.shape
        grid = torch.arange(n, device=u_in.device, dtype=u_in.dtype) / n
        x = torch.cat((u_in.transpose(1, 2), grid.view(1, n, 1).expand(b, n, 1)), dim=-1)  # (B, nx, C)
        x = self.lift(x)
        last = len(self.spectral) - 1
        for i, (spec, skip) in enumerate(zip(self.spectral, self.skip)):
            y = skip(x)
            x = spec(x).to(y.dtype) + y
            if i < last:
                x = F.gelu(x)
        x = self.proj2(F.gelu(self.proj1(x)))  # (B, nx, output_len)
        return x.transpose(1, 2)
